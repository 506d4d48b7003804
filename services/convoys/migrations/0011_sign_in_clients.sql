-- Issue #19: the sign-in cap counts per address and client, so a flood from one client for someone's
-- address never keeps her own request (from her client) from getting its link. The client is a keyed
-- hash made by the API (never the address itself); '' for requests from before this migration.
ALTER TABLE sign_in_requests ADD COLUMN client_hash bytea NOT NULL DEFAULT ''::bytea;
DROP INDEX sign_in_requests_email;
CREATE INDEX sign_in_requests_email ON sign_in_requests (email_hash, client_hash, requested_at);
