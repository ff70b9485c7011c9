"""In-sandbox grading programs (stdlib only); see each file."""
