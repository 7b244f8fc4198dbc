"""Storage: SQLAlchemy models, repositories and migrations.

Importing the package registers every model on ``models.Base.metadata``, so the
metadata always matches what the migrations create, whichever module is imported
first.
"""

from chinwag.store import oauth_models as _oauth_models  # noqa: F401
