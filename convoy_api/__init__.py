"""convoy_api: the HTTP edge. Authentication, HTTP <-> NATS translation, OpenAPI; no database."""
