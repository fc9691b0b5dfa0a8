"""Full-text search over messages (messaging/search/).

Both databases get an index for "newest first". PostgreSQL also gets `search_vector`, a
stored generated column (`to_tsvector('english', body)`, kept up to date by PostgreSQL on
every insert and on every edit the persistence job writes) with a GIN index. The ORM does
not know the column: a GeneratedField over SearchVector would make SQLite (the development
default) fail, there it searches with icontains instead.

On an existing database, adding the column rewrites the messages table once, under an
exclusive lock: tens of seconds per million messages (docs/benchmarks.md, "Search", gives
what loading 1,000,000 took); plan it for a quiet moment.
"""

from django.db import migrations, models

ADD_COLUMN = (
    "ALTER TABLE messaging_message ADD COLUMN search_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, body)) STORED"
)
ADD_INDEX = "CREATE INDEX message_search_vector ON messaging_message USING gin (search_vector)"
DROP_COLUMN = "ALTER TABLE messaging_message DROP COLUMN search_vector"  # drops its index too


def add_search_vector(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ADD_COLUMN)
        schema_editor.execute(ADD_INDEX)


def drop_search_vector(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_COLUMN)


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0002_notification"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="message",
            index=models.Index(fields=["sent_at", "id"], name="message_newest_first"),
        ),
        migrations.RunPython(add_search_vector, drop_search_vector, elidable=False),
    ]
