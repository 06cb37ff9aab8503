"""The registry in the admin: model versions (with import), training runs, evaluations, the
promotion policy and the promotion records. Importing this package registers them all."""

from webchat.registry.admin.html import gates_html, loss_curve_svg, metrics_table_html
from webchat.registry.admin.imports import ImportForm
from webchat.registry.admin.promotion import (
    EvaluationAdmin,
    PromotionPolicyAdmin,
    PromotionRecordAdmin,
)
from webchat.registry.admin.runs import TrainingRunAdmin, TrainingRunForm
from webchat.registry.admin.versions import ModelVersionAdmin
from webchat.registry.services import PROMOTE_PERMISSION

__all__ = [
    "PROMOTE_PERMISSION",
    "EvaluationAdmin",
    "ImportForm",
    "ModelVersionAdmin",
    "PromotionPolicyAdmin",
    "PromotionRecordAdmin",
    "TrainingRunAdmin",
    "TrainingRunForm",
    "gates_html",
    "loss_curve_svg",
    "metrics_table_html",
]
