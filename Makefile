# aduflash build. `make` builds the host tools for this machine into bin/;
# `make cross` builds static binaries for the device architectures into dist/.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/aduflash/aduflash/cmd/internal/cliapp.Version=$(VERSION)
# urfave_cli_no_docs leaves urfave/cli's man page and Markdown generators (and their
# blackfriday and md2man dependencies) out of the binaries: about 0.3 MB of aduagent on arm.
TAGS     := urfave_cli_no_docs
CMDS     := $(notdir $(wildcard cmd/adu*))
PLATFORMS := linux/amd64 linux/arm64 linux/arm/7

export CGO_ENABLED = 0

.PHONY: all build cross test sweep bench bench-agent demo quickstart clean

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o bin/ $(addprefix ./cmd/,$(CMDS))

# dist/<cmd>-<os>-<arch>[v7]: static (CGO_ENABLED=0), stripped.
cross:
	@mkdir -p dist
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%%/*}; rest=$${p#*/}; arch=$${rest%%/*}; arm=""; suffix=""; \
		if [ "$$arch" = arm ]; then arm=$${rest#*/}; suffix=v$$arm; fi; \
		for c in $(CMDS); do \
			echo "  $$c $$os/$$arch$$suffix"; \
			GOOS=$$os GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' \
				-o dist/$$c-$$os-$$arch$$suffix ./cmd/$$c; \
		done; \
	done

test:
	./scripts/test

# The whole power-cut sweep: the power cut at every operation of a whole update (NAND with
# bad blocks, SPI NOR, a block device; an update that succeeds and one that rolls back; the
# cut operation clean or torn). Prints "N cut points, M bad outcomes"; fails on a bad one.
# (Every go test run sweeps a seeded sample of the same cut points.)
sweep:
	$(GO) test -count=1 -timeout 0 -v -run '^TestPowerCutSweep$$' ./devicesim/powercut -sweep=full

bench:
	./scripts/bench

bench-agent:
	./scripts/bench-agent

demo:
	$(GO) run ./cmd/aduhub demo

quickstart:
	./examples/quickstart.sh

clean:
	rm -rf bin dist
