-- services/convoys: personal API tokens expire, have a scope and a last-used date kept coarse (issue #19).
-- scope 'read' tokens are refused on anything but GET/HEAD/OPTIONS at the edge. Tokens made before this
-- migration keep working as they did (read-write) for 90 more days, then expire like new ones.
-- last_used_at existed already; it is now written at most every few minutes (not on every resolve).
ALTER TABLE api_tokens
    ADD COLUMN scope text NOT NULL DEFAULT 'read-write' CHECK (scope IN ('read', 'read-write')),
    ADD COLUMN expires_at timestamptz;
UPDATE api_tokens SET expires_at = now() + interval '90 days' WHERE expires_at IS NULL;
ALTER TABLE api_tokens ALTER COLUMN expires_at SET NOT NULL;
