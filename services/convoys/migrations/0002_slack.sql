-- The convoy's Slack incoming webhook (a secret: never shown to members, only whether it is set).
ALTER TABLE convoys ADD COLUMN slack_webhook_url text;
