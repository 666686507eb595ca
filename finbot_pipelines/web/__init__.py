"""The household web app: an API under /api/v1 (OpenAPI), server-rendered pages and their
authentication. It reads the published marts only (never the warehouse)."""
