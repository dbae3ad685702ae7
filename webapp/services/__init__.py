"""Application services of the web layer: the REST routes and the UI handlers parse, call one of these, and
render; the rules live here."""
