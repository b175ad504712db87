"""`python -m serving`: the inference endpoint under uvicorn, settings from the environment."""

import sys

import uvicorn
from pydantic import ValidationError

from serving.app import create_app
from serving.settings import Settings


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "SERVING_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"error: {name}: {error['msg']}", file=sys.stderr)
        return 2
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
