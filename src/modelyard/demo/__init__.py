"""The telco churn scenario, end to end through the real product."""

from modelyard.demo.sdk_tour import TourResult, run_sdk_tour

__all__ = ["TourResult", "run_sdk_tour"]
