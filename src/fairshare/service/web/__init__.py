"""Server-rendered web pages for committees and teams, on the same app, store and rules as the API."""
