-- The convoy's Slack incoming webhook (a secret: never shown to members, only whether it is set).
ALTER TABLE convoys ADD COLUMN slack_webhook_url text;
-- Whether each new report is posted there too (digests always are).
ALTER TABLE convoys ADD COLUMN slack_post_reports boolean NOT NULL DEFAULT false;
