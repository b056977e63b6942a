"""cctally's web package: the Flask app, the JSON API and the stats page."""
