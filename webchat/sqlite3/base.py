"""Django's SQLite backend, making the database file's folder on the first connection.

The embedded default keeps its database under var/ (WEBCHAT_VAR_DIR), which a fresh checkout
does not have; SQLite creates the file but not its folder.
"""

from pathlib import Path

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        name = conn_params["database"]
        if not self.creation.is_in_memory_db(name):
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        return super().get_new_connection(conn_params)
