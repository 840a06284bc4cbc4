# nanotoll: one entry point for set-up, tests, demo and benchmarks.
#   make setup           install/check the toolchain (tools/setup.sh; fast when cached)
#   make test            ruff, then pytest over tests/ (pytest's summary is the last line)
#   make test-firmware   pytest on the firmware tests only (-k firmware; FIRMWARE_TESTS=...)
#   make test-contracts  forge test in contracts/
#   make test-board      the emulated board: flash, provision, purchases, settlement,
#                        and the Robot suites in renode/ (run in QEMU); part of make test
#   make demo | bench    the nanotoll CLI
#   make clean           build outputs (keeps .venv, node_modules and the download cache)
#   make distclean       everything set-up made, download cache included

ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
TC := $(ROOT)/.toolchain
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
ANVIL_BIN := $(ROOT)/node_modules/@foundry-rs/anvil-linux-amd64/bin
FORGE_BIN := $(ROOT)/node_modules/@foundry-rs/forge-linux-amd64/bin

# Absolute paths for the tests and the CLI (made by tools/setup.sh).
export NANOTOLL_MICROPYTHON := $(TC)/bin/micropython
export NANOTOLL_MPY_CROSS := $(TC)/bin/mpy-cross
export NANOTOLL_QEMU_FIRMWARE := $(TC)/qemu/firmware.elf
export NANOTOLL_QEMU_BOARD_FIRMWARE := $(TC)/qemu-nanotoll/firmware.elf
export NANOTOLL_ANVIL := $(ANVIL_BIN)/anvil
export NANOTOLL_FORGE := $(FORGE_BIN)/forge
export NANOTOLL_SOLC := $(ROOT)/tools/solc
export PATH := $(VENV)/bin:$(TC)/bin:$(ANVIL_BIN):$(FORGE_BIN):$(ROOT)/node_modules/.bin:$(PATH)

PYTEST_ARGS ?=
FIRMWARE_TESTS ?= tests/firmware
BOARD_TESTS ?= tests/board

# pytest exits 5 when it collects no test; that is not a failure here.
PYTEST = $(PY) -m pytest

.PHONY: setup test lint test-firmware test-contracts test-board demo bench clean distclean

setup:
	@bash tools/setup.sh

lint: setup
	$(VENV)/bin/ruff check gateway tests tools
	$(VENV)/bin/mypy

test: setup lint
	$(PYTEST) $(PYTEST_ARGS) tests || [ $$? -eq 5 ]

test-firmware: setup
	$(PYTEST) $(PYTEST_ARGS) $(FIRMWARE_TESTS) || [ $$? -eq 5 ]

test-board: setup
	$(PYTEST) $(PYTEST_ARGS) $(BOARD_TESTS)

test-contracts: setup
	cd contracts && $(NANOTOLL_FORGE) test

demo: setup
	$(VENV)/bin/nanotoll demo

bench: setup
	$(VENV)/bin/nanotoll bench all --json

clean:
	rm -rf contracts/out contracts/cache build dist .pytest_cache .ruff_cache runs
	rm -rf $(TC)/micropython-* $(TC)/bin $(TC)/qemu $(TC)/qemu-nanotoll $(TC)/logs
	find . -path ./node_modules -prune -o -path ./.venv -prune -o \
	  \( -name __pycache__ -o -name '*.egg-info' \) -type d -print \
	  | xargs -r rm -rf
	find . -path ./node_modules -prune -o -path ./.venv -prune -o \
	  -name '*.mpy' -type f -print | xargs -r rm -f

distclean: clean
	rm -rf $(VENV) node_modules $(TC)
