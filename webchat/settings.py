"""Django settings, read only from the environment.

With nothing set you get the embedded default: SQLite under var/, the in-memory channel layer, and
Celery on an in-process memory transport with a worker thread inside the web process. DATABASE_URL
switches to PostgreSQL; REDIS_URL switches Celery's broker/result backend and the channel layer to
Redis, with separate worker processes. DJANGO_DEBUG=0 is production mode and needs
DJANGO_SECRET_KEY. Every variable read here is listed in docs/deploy.md.

Reading this module has no side effects: folders are made where files are written, and the
server's start-up work is webchat.startup's.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

VAR_DIR = Path(env("WEBCHAT_VAR_DIR", default=str(BASE_DIR / "var")))
MODELS_DIR = Path(env("WEBCHAT_MODELS_DIR", default=str(VAR_DIR / "models")))

DEBUG = env.bool("DJANGO_DEBUG", default=True)

if DEBUG:
    SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-dev-key-only-for-the-embedded-default")
else:
    SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Production mode (DJANGO_DEBUG=0) refuses to start "
            "without a secret key: generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'` and export it."
        )

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    "webchat.accounts",
    "webchat.registry",
    "webchat.chat",
    "webchat.curation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "webchat.security.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "webchat.urls"
WSGI_APPLICATION = "webchat.wsgi.application"
ASGI_APPLICATION = "webchat.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "webchat.registry.context_processors.model_status",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's SQLite backend, which also makes the database's folder (a fresh checkout has no
    # var/).
    DATABASES["default"]["ENGINE"] = "webchat.sqlite3"
    # The embedded worker writes from threads while the web side reads: WAL and a busy timeout
    # keep SQLite from answering "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
    # A connection kept across requests is checked before reuse, so a PostgreSQL restart costs
    # one reconnect instead of an error on the next query.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis, channels, celery ----------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
EMBEDDED_WORKER = env.bool("WEBCHAT_EMBEDDED_WORKER", default=not REDIS_URL)
# What the web server does when it starts (webchat.startup): start the embedded worker (when
# EMBEDDED_WORKER allows one), and train the default model when there is no model at all.
START_EMBEDDED_WORKER = env.bool("WEBCHAT_START_EMBEDDED_WORKER", default=True)
AUTO_DEFAULT_MODEL = env.bool("WEBCHAT_AUTO_DEFAULT_MODEL", default=True)

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1500, "expiry": 60},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    # A task longer than the visibility timeout is redelivered; training is resumable and
    # idempotent, but there is no reason to redeliver sooner than a long training run.
    {"visibility_timeout": 6 * 3600} if REDIS_URL else {"polling_interval": 0.02}
)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_EXPIRES = 3600
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 600
CELERY_TASK_TIME_LIMIT = 660
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Survive the broker going away (issue 16): retry the connection for ever instead of exiting
# after 100 tries, and keep the tasks already running (a reply in flight finishes into the
# database; only its pushes are lost while Redis is away).
CELERY_BROKER_CONNECTION_RETRY = True
if REDIS_URL:  # kombu's Redis transport, minus the restore that crashed a worker on Redis loss
    CELERY_BROKER_TRANSPORT = "worker.broker:Transport"
    CELERY_WORKER_CONSUMER = "worker.broker:Consumer"  # retries a lost broker every second
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_HEARTBEAT = 10
CELERY_WORKER_LOG_FORMAT = (
    "[%(asctime)s: %(levelname)s/%(processName)s] reply=%(reply)s %(message)s"
)
CELERY_WORKER_TASK_LOG_FORMAT = (
    "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s] "
    "reply=%(reply)s %(message)s"
)
# One routing block for every task: gpu = generation, train = fine-tuning, cpu = the rest.
CELERY_TASK_ROUTES = {
    "worker.generation.*": {"queue": "gpu"},
    "worker.training.*": {"queue": "train"},
    "worker.curation.*": {"queue": "cpu"},
    "worker.evaluation.*": {"queue": "cpu"},
    "worker.schedules.*": {"queue": "cpu"},
    "worker.models.*": {"queue": "cpu"},
    "worker.ping": {"queue": "cpu"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Static schedules (the database scheduler adds those edited in the admin).
CELERY_BEAT_SCHEDULE = {
    "reap-interrupted-replies": {"task": "worker.generation.reap_interrupted", "schedule": 10.0},
}

# --- auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:index"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- production hardening -------------------------------------------------------------------
# Only behind a TLS-terminating reverse proxy that sets X-Forwarded-Proto itself may the header
# be trusted: with daphne exposed directly, any client could claim its request came over HTTPS.
BEHIND_PROXY = env.bool("WEBCHAT_BEHIND_PROXY", default=False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
# docs/deploy.md: behind a reverse proxy that redirects to HTTPS and sets HSTS, silence
# security.W004 and security.W008 with DJANGO_SILENCED_SYSTEM_CHECKS.
SILENCED_SYSTEM_CHECKS = env.list("DJANGO_SILENCED_SYSTEM_CHECKS", default=[])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s reply=%(reply)s: %(message)s"}
    },
    "filters": {
        "quiet_periodic": {"()": "webchat.logfilters.QuietPeriodicTasks"},
        "reply": {"()": "webchat.turnlog.ReplyContext"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["quiet_periodic", "reply"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# --- ceilings on training runs started from the admin (webchat.registry.hyperparameters) -----
WEBCHAT_TRAINING = {
    "MAX_STEPS": env.int("WEBCHAT_TRAIN_MAX_STEPS", default=20_000),
    "MAX_BATCH_SIZE": env.int("WEBCHAT_TRAIN_MAX_BATCH_SIZE", default=64),
    "MAX_SEQ_LEN": env.int("WEBCHAT_TRAIN_MAX_SEQ_LEN", default=1024),
    "MAX_PARAMS": env.int("WEBCHAT_TRAIN_MAX_PARAMS", default=50_000_000),
    "DEVICES": tuple(env.list("WEBCHAT_TRAIN_DEVICES", default=["auto", "cpu", "cuda"])),
}

# --- the serving engine of a gpu worker (worker.generation.EngineHost) ----------------------
WEBCHAT_ENGINE = {
    # rows decoded together (more requests wait in the engine's queue), fewer when their KV
    # cache would take more than KV_CACHE_MB (worker.generation.engine_rows): 64 rows of the
    # default model take 67 MB; a 124M GPT-2 with 1,024 positions gets 13 rows in 1,024 MB
    "MAX_BATCH_SIZE": env.int("WEBCHAT_ENGINE_MAX_BATCH_SIZE", default=64),
    "KV_CACHE_MB": env.int("WEBCHAT_ENGINE_KV_CACHE_MB", default=1024),
    # torch intra-op threads of a dedicated worker process on the CPU (0: torch's default, one
    # per core). One is the measured default (docs/benchmarks.md, 64 users): the worker's own
    # threads, daphne and Redis share the cores, and with two threads the OpenMP workers of the
    # small decode matmuls mostly wait for each other. Not applied to the embedded worker,
    # where a training run shares the process's threads.
    "CPU_THREADS": env.int("WEBCHAT_ENGINE_CPU_THREADS", default=1),
}

# --- product limits: the one place their defaults are (webchat.chat.validation.limits) -------
WEBCHAT = {
    "MAX_MESSAGE_CHARS": env.int("WEBCHAT_MAX_MESSAGE_CHARS", default=4000),
    "MAX_SYSTEM_PROMPT_CHARS": env.int("WEBCHAT_MAX_SYSTEM_PROMPT_CHARS", default=4000),
    "MAX_FEEDBACK_CHARS": env.int("WEBCHAT_MAX_FEEDBACK_CHARS", default=8000),
    "MAX_FRAME_BYTES": env.int("WEBCHAT_MAX_FRAME_BYTES", default=64 * 1024),
    "MAX_ACTIVE_GENERATIONS_PER_USER": env.int("WEBCHAT_MAX_ACTIVE_PER_USER", default=1),
    "RATE_LIMIT_PER_MINUTE": env.int("WEBCHAT_RATE_LIMIT_PER_MINUTE", default=20),
    "MAX_TOKENS_PER_REPLY": env.int("WEBCHAT_MAX_TOKENS_PER_REPLY", default=1024),
    "HEARTBEAT_TIMEOUT_S": env.int("WEBCHAT_HEARTBEAT_TIMEOUT_S", default=30),
    # Messages per page of a conversation's history (the page asks for older pages).
    "HISTORY_PAGE": env.int("WEBCHAT_HISTORY_PAGE", default=60),
    # Login attempts per minute per client address and per username; signups per address.
    "LOGIN_ATTEMPTS_PER_MINUTE": env.int("WEBCHAT_LOGIN_ATTEMPTS_PER_MINUTE", default=10),
    "SIGNUPS_PER_MINUTE": env.int("WEBCHAT_SIGNUPS_PER_MINUTE", default=3),
    # Open chat sockets per user, and frames per second one socket may send (a burst of
    # twice that is fine).
    "MAX_SOCKETS_PER_USER": env.int("WEBCHAT_MAX_SOCKETS_PER_USER", default=8),
    "MAX_FRAMES_PER_SECOND": env.int("WEBCHAT_MAX_FRAMES_PER_SECOND", default=10),
    # A queued reply nobody claimed is re-dispatched after UNCLAIMED_GRACE_S and marked
    # interrupted after QUEUED_TIMEOUT_S (webchat.chat.replies, worker.claims).
    "UNCLAIMED_GRACE_S": env.int("WEBCHAT_UNCLAIMED_GRACE_S", default=10),
    "QUEUED_TIMEOUT_S": env.int("WEBCHAT_QUEUED_TIMEOUT_S", default=300),
}
# daphne's own websocket limits (runserver reads these; `python -m webchat.server` passes them
# to daphne): a frame over the limit is refused by the protocol before it is buffered.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = WEBCHAT["MAX_FRAME_BYTES"]
DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = WEBCHAT["MAX_FRAME_BYTES"]
# GET /metrics answers a staff session, or this bearer token when set (webchat.metrics).
WEBCHAT_METRICS_TOKEN = env("WEBCHAT_METRICS_TOKEN", default="")
