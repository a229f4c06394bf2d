.PHONY: install serve test lint format bench

install:          ## install agproxy into the current Python
	pip install .

serve:            ## run the gateway on the embedded SQLite default
	agproxy serve

test:             ## install test dependencies (venv + chromium) and run all tests
	./scripts/test

lint:             ## what CI checks besides the tests: ruff, the formatter, strict mypy
	.venv/bin/ruff check agproxy tests bench
	.venv/bin/ruff format --check agproxy tests bench
	.venv/bin/mypy

format:           ## rewrite code and tests as the formatter wants them
	.venv/bin/ruff format agproxy tests bench

bench:            ## what the gateway adds over calling the fake upstream directly
	.venv/bin/python bench/run.py
	.venv/bin/python bench/monitor.py
