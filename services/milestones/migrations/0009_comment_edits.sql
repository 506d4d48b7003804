-- services/milestones: authors edit and delete their own comments within a short window (issue #18;
-- CONVOY_COMMENT_EDIT_WINDOW_S, default 15 minutes). No earlier versions are kept: the window is a
-- grace period for typos, like Discourse's, and what a facilitator hides is the comment as it stands.
-- A deleted comment keeps its row with the text removed (body ''): while it has answers the thread
-- shows a "deleted" placeholder so the answers keep their context; without answers it is shown nowhere.
ALTER TABLE comments ADD COLUMN edited_at timestamptz;
ALTER TABLE comments ADD COLUMN deleted_at timestamptz;
