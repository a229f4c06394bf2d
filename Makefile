.PHONY: install serve test lint bench

install:          ## install agproxy into the current Python
	pip install .

serve:            ## run the gateway on the embedded SQLite default
	agproxy serve

test:             ## install test dependencies (venv + chromium) and run all tests
	./scripts/test

lint:             ## ruff over code and tests
	.venv/bin/ruff check agproxy tests bench
	.venv/bin/mypy agproxy

bench:            ## what the gateway adds over calling the fake upstream directly
	.venv/bin/python bench/run.py
	.venv/bin/python bench/monitor.py
