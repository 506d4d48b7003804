-- A convoy's chat channels (issue #22): one webhook per convoy and channel (slack, teams, and
-- whatever channel comes next, without a new column). The URL is a secret: never shown to members,
-- only which channels are set. Slack's webhook moves here from the convoys table.
CREATE TABLE chat_webhooks (
    convoy_id    uuid NOT NULL REFERENCES convoys (id) ON DELETE CASCADE,
    channel      text NOT NULL CHECK (channel ~ '^[a-z][a-z0-9_]{0,30}$'),
    webhook_url  text NOT NULL,
    -- whether each new report is posted there too (digests always are)
    post_reports boolean NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (convoy_id, channel)
);
INSERT INTO chat_webhooks (convoy_id, channel, webhook_url, post_reports)
SELECT id, 'slack', slack_webhook_url, slack_post_reports FROM convoys WHERE slack_webhook_url IS NOT NULL;
ALTER TABLE convoys DROP COLUMN slack_webhook_url, DROP COLUMN slack_post_reports;
