"""`python -m serving`: the inference endpoint under uvicorn, settings from the environment."""

import sys

import uvicorn
from pydantic import ValidationError

from serving.main import create_app
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
    # the same SERVING_* environment.
    uvicorn.run(
        create_app(settings) if settings.workers == 1 else "serving.main:create_app",
        factory=settings.workers > 1,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
