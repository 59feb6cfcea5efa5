"""How every example connects: MODELYARD_URL, and MODELYARD_API_KEY or MODELYARD_USERNAME/MODELYARD_PASSWORD."""

import os

from modelyard.client import Client

CHURN = "Customer Churn Predictor"  # example 1's model, which the later examples build on
CHURN_V2 = "Customer Churn Predictor v2"  # example 4's challenger


def connect() -> Client:
    if os.environ.get("MODELYARD_API_KEY"):
        return Client()
    return Client(username=os.environ.get("MODELYARD_USERNAME", "admin"), password=os.environ["MODELYARD_PASSWORD"])
