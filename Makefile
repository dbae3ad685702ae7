# Draftroom: `make run` starts the studio, `make test` runs the whole test suite.
# Both create or refresh .venv first (idempotent: fast when nothing changed).
.PHONY: run test install

run:
	scripts/install.sh run
	.venv/bin/python app.py serve

test:
	scripts/test.sh

install:
	scripts/install.sh test
