"""`python -m serving`: the inference endpoint under uvicorn, settings from the environment."""

import sys

import uvicorn
from pydantic import ValidationError

from scoring import ModelArtefactError
from serving.main import ModelConfigError, create_app
from serving.schemas import SchemaError
from serving.settings import Settings


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "SERVING_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"error: {name.rstrip('_') or 'SERVING'}: {error['msg']}", file=sys.stderr)
        return 2
    # One worker: this process serves the app. More: each worker process builds its own app from
    # the same SERVING_* environment (this one is built first, to fail here, clearly, if it can't).
    try:
        app = create_app(settings)
    except (ModelArtefactError, ModelConfigError, SchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        app if settings.workers == 1 else "serving.main:create_app",
        factory=settings.workers > 1,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
