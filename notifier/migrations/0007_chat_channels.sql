-- Chat channels (issue #22): a delivery's channel is any chat channel's name (slack, teams, …) besides
-- email, so a new channel needs no migration here.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_channel_check CHECK (channel ~ '^[a-z][a-z0-9_]{0,30}$');
