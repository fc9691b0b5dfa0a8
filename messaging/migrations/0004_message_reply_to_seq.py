from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0003_message_search"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="reply_to_seq",
            field=models.PositiveBigIntegerField(blank=True, null=True),
        ),
    ]
