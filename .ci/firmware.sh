#!/usr/bin/env bash
# The firmware example (firmware/): builds the Cortex-M3 image, runs it under QEMU with a time
# limit, and fails unless every expected line appears, in order, and QEMU exits with success.
# Then prints the image's flash and RAM sizes. Installs what it needs. Run from anywhere:
#   bash .ci/firmware.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../firmware"

step() { printf '\n==> %s\n' "$*"; }

TARGET=thumbv7m-none-eabi
ELF=target/$TARGET/release/async-with-firmware

step "qemu-system-arm, the target, llvm-size"
if ! command -v qemu-system-arm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # Without recommends: no GUI, audio or block-driver extras (qemu-block-extra would also
    # replace a newer qemu-utils than Debian's with Debian's own).
    apt-get install -y --no-install-recommends qemu-system-arm
fi
qemu-system-arm --version | head -n 1
rustup target add "$TARGET"
# llvm-size from rustup's llvm-tools (the toolchain's own LLVM; no cargo-binutils needed).
rustup component add llvm-tools
LLVM_SIZE="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-size"
test -x "$LLVM_SIZE"

step "build (release)"
cargo build --release --locked

step "run under QEMU (lm3s6965evb, Cortex-M3)"
OUTPUT=$(mktemp)
trap 'rm -f "$OUTPUT"' EXIT
status=0
timeout 60 qemu-system-arm -cpu cortex-m3 -machine lm3s6965evb -nographic \
    -semihosting-config enable=on,target=native -kernel "$ELF" >"$OUTPUT" 2>&1 || status=$?
cat "$OUTPUT"

# What the firmware must print, in this order (glob patterns: `*` matches any text; a literal
# `[` or `]` is written `\[`, `\]`).
EXPECTED=(
    "async-with on a Cortex-M3 (embassy-executor, QEMU lm3s6965evb)"
    "-- 1. read"
    "enter: power up"
    "enter: sensor ready"
    "body: read 2150"
    "exit: power down after Success"
    "exit: sensor off"
    "result: Ok(2150)"
    "-- 2. failing read"
    "enter: power up"
    "enter: sensor ready"
    "body: read Err(NoAck)"
    "exit: power down after Failure(NoAck)"
    "exit: sensor off"
    "result: Err(Body(NoAck))"
    "-- 3. read cancelled by select"
    "enter: power up"
    "enter: sensor ready"
    "body: slow read started"
    "body: future dropped"
    "cancel: power cut synchronously"
    "select: deadline first, read cancelled"
    "cancel hook ran 1 time(s)"
    "-- 4. SPI transaction (embedded-hal-async SpiBus, OutputPin chip select)"
    "spi: flush"
    "cs: low"
    "spi: write \[05\]"
    "spi: read \[01\]"
    "body: busy, read the status again"
    "spi: write \[05\]"
    "spi: read \[00\]"
    "spi: write \[9f\]"
    "spi: read \[ef, 40, 18\]"
    "spi: flush"
    "cs: high"
    "result: Ok(\[ef, 40, 18\])"
    "check: chip select high"
    "-- 5. failing SPI transaction"
    "spi: flush"
    "cs: low"
    "spi: write \[9f\]"
    "spi: read failed: Overrun"
    "spi: flush"
    "cs: high"
    "result: Err(Body(Overrun))"
    "check: chip select high"
    "-- 6. SPI transaction cancelled by select"
    "spi: flush"
    "cs: low"
    "spi: write \[03, 00, 10, 00\]"
    "body: slow read started"
    "spi: read aborted (future dropped)"
    "cs: high"
    "select: deadline first, transaction cancelled"
    "check: chip select high"
    "size_of WithFuture (read task) = * bytes"
    "size_of WithFuture (SPI transaction) = * bytes"
    "all checks passed"
)

step "check the output"
failed=0
next=0
while IFS= read -r line; do
    line=${line%$'\r'}
    # shellcheck disable=SC2053 # the right side is a glob pattern on purpose
    if ((next < ${#EXPECTED[@]})) && [[ $line == ${EXPECTED[next]} ]]; then
        next=$((next + 1))
    fi
done <"$OUTPUT"
if ((next < ${#EXPECTED[@]})); then
    echo "missing (or out of order): '${EXPECTED[next]}'" >&2
    failed=1
fi
if grep -q '^FAILED\|^panic' "$OUTPUT"; then
    echo "the firmware reported a failure" >&2
    failed=1
fi
if ((status != 0)); then
    if ((status == 124)); then
        echo "QEMU did not exit within 60 s" >&2
    else
        echo "QEMU exited with status $status" >&2
    fi
    failed=1
fi
if ((failed)); then
    echo "firmware check FAILED" >&2
    exit 1
fi
echo "all ${#EXPECTED[@]} expected lines seen, in order; QEMU exit status 0"

step "flash and RAM (llvm-size; flash = text + data, RAM = data + bss)"
"$LLVM_SIZE" "$ELF"
"$LLVM_SIZE" -A "$ELF" | grep -E '^(section|\.vector_table|\.text|\.rodata|\.data|\.bss|\.uninit) '
step "firmware passed"
