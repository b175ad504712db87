"""FastAPI inference endpoint over Feast. Not built yet: see README, "Not done yet"."""
