"""`python -m serving`: the inference endpoint under uvicorn, settings from the environment."""

import uvicorn

from serving.app import create_app
from serving.settings import Settings

if __name__ == "__main__":
    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)
