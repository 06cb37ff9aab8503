"""The curator's workspace: flagged replies and corrections, adversarial samples with review,
generation jobs, frozen dataset versions (build, download, fine-tune), the loop's settings, and the
audit log of staff access to conversation content (admins only). Importing this package
registers them all."""

from webchat.curation.admin.audit import AuditedContentAdmin, ConversationAccessLogAdmin
from webchat.curation.admin.datasets import DatasetAdmin
from webchat.curation.admin.flagged import FlaggedTurnAdmin
from webchat.curation.admin.forms import (
    GENERATION_METHODS,
    BuildDatasetForm,
    FineTuneForm,
    SkillsGenerateForm,
    render_form,
)
from webchat.curation.admin.jobs import CurationJobAdmin
from webchat.curation.admin.loop import LoopSettingsAdmin
from webchat.curation.admin.reviews import ReviewPolicyAdmin
from webchat.curation.admin.samples import AdversarialSampleAdmin
from webchat.curation.admin.schedules import GuardedPeriodicTaskAdmin

__all__ = [
    "GENERATION_METHODS",
    "AdversarialSampleAdmin",
    "AuditedContentAdmin",
    "BuildDatasetForm",
    "ConversationAccessLogAdmin",
    "CurationJobAdmin",
    "DatasetAdmin",
    "FineTuneForm",
    "FlaggedTurnAdmin",
    "GuardedPeriodicTaskAdmin",
    "LoopSettingsAdmin",
    "ReviewPolicyAdmin",
    "SkillsGenerateForm",
    "render_form",
]
