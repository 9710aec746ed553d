#!/usr/bin/env bash
# The firmware example (firmware/): builds the Cortex-M3 image four times — with `with` and with
# the same logic written by hand (feature `hand-written`), each at opt-level "s" (`release`) and
# "z" (`release-z`) — runs each under QEMU with a time limit, and fails unless every expected
# line appears, in order, QEMU exits with success, and all four print the same lines (but for
# the sizes). Then prints their flash and RAM sizes side by side, and the size of each
# scenario's future. Installs what it needs. Run from anywhere:
#   bash .ci/firmware.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../firmware"

step() { printf '\n==> %s\n' "$*"; }

TARGET=thumbv7m-none-eabi
# Sizes depend on the compiler: the flash guard at the end was measured with this one.
export RUSTUP_TOOLCHAIN=1.95.0
# The four builds: name, cargo profile, features.
BUILDS=(
    "with-s release"
    "hand-written-s release hand-written"
    "with-z release-z"
    "hand-written-z release-z hand-written"
)
# Where each build's ELF is kept (cargo overwrites its own copy when the features change).
ELVES=target/sizes

step "qemu-system-arm, the target, llvm-size"
if ! command -v qemu-system-arm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # Without recommends: no GUI, audio or block-driver extras (qemu-block-extra would also
    # replace a newer qemu-utils than Debian's with Debian's own).
    apt-get install -y --no-install-recommends qemu-system-arm
fi
qemu-system-arm --version | head -n 1
rustup toolchain install "$RUSTUP_TOOLCHAIN" --profile minimal
rustup target add "$TARGET"
# llvm-size and llvm-nm from rustup's llvm-tools (the toolchain's own LLVM; no cargo-binutils
# needed).
rustup component add llvm-tools
rustc --version
LLVM_BIN="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
LLVM_SIZE="$LLVM_BIN/llvm-size"
LLVM_NM="$LLVM_BIN/llvm-nm"
test -x "$LLVM_SIZE"
test -x "$LLVM_NM"

# Sizes may not depend on where the repository or the cargo home is: panic locations put
# source paths in flash. Remap both to fixed names. RUSTFLAGS replaces the target's rustflags of
# .cargo/config.toml, so its linker script flag is repeated here (the build script is not
# affected: the target is set, so these flags reach only the firmware's own artifacts).
ROOT=$(cd .. && pwd)
CARGO_HOME_DIR=${CARGO_HOME:-$HOME/.cargo}
flags=(-C link-arg=-Tlink.x "--remap-path-prefix=$ROOT=/async-with"
    "--remap-path-prefix=$CARGO_HOME_DIR=/cargo-home")
CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f'; echo "${flags[*]}")
export CARGO_ENCODED_RUSTFLAGS

mkdir -p "$ELVES"
for build in "${BUILDS[@]}"; do
    read -r name profile features <<<"$build"
    step "build $name (profile $profile${features:+, feature $features})"
    cargo build --profile "$profile" --locked ${features:+--features "$features"}
    cp "target/$TARGET/$profile/async-with-firmware" "$ELVES/$name"
done

# What the firmware must print, in this order (glob patterns: `*` matches any text; a literal
# `[` or `]` is written `\[`, `\]`). The same for every build.
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
    "exit: power down after Failure"
    "exit: sensor off"
    "exit: body failed: NoAck"
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
    "-- 7. read stopped by a signal (cancel_on)"
    "enter: power up"
    "enter: sensor ready"
    "body: waiting for a sample"
    "body: future dropped"
    "exit: power down after Cancelled"
    "exit: sensor off"
    "result: Err(Body { exit: None })"
    "check: sensor off, by the awaited exit (cancel hook not run)"
    "-- 8. read in a one-function manager (scoped)"
    "setup: power up"
    "setup: sensor ready"
    "body: read 2150"
    "teardown: power down after Success"
    "teardown: sensor off (it had settled in 2 polls)"
    "result: Ok(2150)"
    "size_of future, 1. read = * bytes"
    "size_of future, 2. failing read = * bytes"
    "size_of future, 3. read cancelled by select = * bytes"
    "size_of future, 4. SPI transaction = * bytes"
    "size_of future, 5. failing SPI transaction = * bytes"
    "size_of future, 6. SPI transaction cancelled by select = * bytes"
    "size_of future, 7. read stopped by a signal = * bytes"
    "size_of future, 8. read in a one-function manager = * bytes"
    "size_of future, all eight (the task's) = * bytes"
    "all checks passed"
)

# Checks one run's output (file $1, QEMU's exit status $2); prints what is wrong, returns 1 if
# anything is.
check_output() {
    local output=$1 status=$2 failed=0 next=0 line
    while IFS= read -r line; do
        line=${line%$'\r'}
        # shellcheck disable=SC2053 # the right side is a glob pattern on purpose
        if ((next < ${#EXPECTED[@]})) && [[ $line == ${EXPECTED[next]} ]]; then
            next=$((next + 1))
        fi
    done <"$output"
    if ((next < ${#EXPECTED[@]})); then
        echo "missing (or out of order): '${EXPECTED[next]}'" >&2
        failed=1
    fi
    if grep -q '^FAILED\|^panic' "$output"; then
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
    return "$failed"
}

OUTPUTS=$(mktemp -d)
trap 'rm -rf "$OUTPUTS"' EXIT
failed=0
first=
for build in "${BUILDS[@]}"; do
    read -r name _ <<<"$build"
    step "run $name under QEMU (lm3s6965evb, Cortex-M3)"
    status=0
    timeout 60 qemu-system-arm -cpu cortex-m3 -machine lm3s6965evb -nographic \
        -semihosting-config enable=on,target=native -kernel "$ELVES/$name" \
        >"$OUTPUTS/$name" 2>&1 || status=$?
    # The first build's output in full; the others' only where they differ from it.
    if [[ -z $first ]]; then
        first=$name
        cat "$OUTPUTS/$name"
    fi
    if check_output "$OUTPUTS/$name" "$status"; then
        echo "$name: all ${#EXPECTED[@]} expected lines seen, in order; QEMU exit status 0"
    else
        echo "$name: firmware check FAILED; its output:" >&2
        cat "$OUTPUTS/$name" >&2
        failed=1
    fi
    # The same lines as the first build, but for the sizes (a stronger check than the
    # patterns above that the hand-written logic is the same as `with`'s).
    if [[ $name != "$first" ]] &&
        ! diff <(sed 's/= [0-9]* bytes$/= N bytes/' "$OUTPUTS/$first") \
            <(sed 's/= [0-9]* bytes$/= N bytes/' "$OUTPUTS/$name") >&2; then
        echo "$name does not print what $first prints (above: < $first, > $name)" >&2
        failed=1
    fi
done
if ((failed)); then
    echo "firmware check FAILED" >&2
    exit 1
fi

step "flash and RAM (llvm-size; flash = text + data, RAM = data + bss)"
(cd "$ELVES" && "$LLVM_SIZE" "${BUILDS[@]%% *}")
"$LLVM_SIZE" -A "$ELVES/$first" | grep -E '^(section|\.vector_table|\.text|\.rodata|\.data|\.bss|\.uninit) '

# One build's `text data bss`.
sizes() { "$LLVM_SIZE" "$ELVES/$1" | awk 'NR == 2 { print $1, $2, $3 }'; }

# excess LEVEL: `with-LEVEL`'s text, the hand-written build's, and the excess in percent.
excess() {
    local with hand
    read -r with _ <<<"$(sizes "with-$1")"
    read -r hand _ <<<"$(sizes "hand-written-$1")"
    echo "$with $hand $(awk -v w="$with" -v h="$hand" 'BEGIN { printf "%.2f", 100 * (w - h) / h }')"
}

step "with vs hand-written (delta of text against the hand-written build at the same opt-level)"
echo "| build | text | data | bss | text vs hand-written |"
echo "|---|---:|---:|---:|---:|"
for build in "${BUILDS[@]}"; do
    read -r name _ <<<"$build"
    read -r text data bss <<<"$(sizes "$name")"
    if [[ $name == with-* ]]; then
        read -r _ hand percent <<<"$(excess "${name#with-}")"
        delta=$(printf '%+d (%+.2f%%)' $((text - hand)) "$percent")
    else
        delta="(baseline)"
    fi
    echo "| $name | $text | $data | $bss | $delta |"
done

# The flash guard: `with`'s text over the hand-written build's, in percent, may not grow past
# what was measured (rustc 1.95.0 (59807616e 2026-04-14): +14.20% at "s", +17.60% at "z")
# by more than half a percentage point. At "z" both builds link compiler_builtins' memcpy (756
# bytes with `__aeabi_memcpy`; `with` also `__aeabi_memcpy4`, 156). Issue 17 raised the limits
# from 8.2 and 21.5 (measured +7.96% and +21.17%) to 15.4 and 22.9: exit futures that borrow
# the outcome (the crate's exit phase a self-borrow) took `with` to +13.06% and +22.59% with
# no other change here; the sensor's exit logging the body's error after its drain, to +14.94%
# and +22.46%. Issue 18: graceful cancellation in the crate took `with` to +15.17% and +23.07%
# (20,436 against 17,744; 19,352 against 15,724) with nothing changed here, past the "z" limit;
# scenario 7 (a signal stops the sensor's body; `cancel_on`, and a hand-written select), in
# both builds, to the figures above: +2,568 and +2,400 bytes at "s", +2,112 and +2,528 at "z",
# where the hand-written build now links memcpy too (its 756 bytes; the task copies the array
# of seven future sizes, 28 bytes, with it). The limits were lowered to the new figures plus
# half a point. Issue 19: scenario 8 (a one-function manager, `scoped(..).with(body)`, against
# the same setup and teardown around the body in an `async fn`) added 2,620 and 1,252 bytes at
# "s", 2,804 and 1,092 at "z", to +19.76% (25,624 against 21,396) and +25.45% (24,268 against
# 19,344); the limits were raised to those plus half a point. Issue 17's cost work (the exit
# phase's first poll with no second look at the phase, one look at the exit slot's tag per
# poll, its drop out of line) took them to +16.38% (24,900 against 21,396) and +24.21%
# (24,028 against 19,344); the limits were lowered to those plus half a point. Its second
# round (no drop glue for writes over an empty slot, the body's resource taken through the
# lend it was polled in, the phase tested before projecting, small helpers always inlined,
# `CancelOn` calling the state machine from one place) took them to +13.48% (24,280 against
# 21,396) and +22.11% (23,620 against 19,344); the limits were lowered to those plus half a
# point.
FLASH_LIMITS=("s 14.0" "z 22.7")
for limit in "${FLASH_LIMITS[@]}"; do
    read -r level allowed <<<"$limit"
    read -r with hand percent <<<"$(excess "$level")"
    if awk -v p="$percent" -v l="$allowed" 'BEGIN { exit !(p > l) }'; then
        echo "REGRESSION: with-$level text $with is $percent% over hand-written-$level ($hand), more than $allowed%" >&2
        exit 1
    fi
    echo "with-$level: $percent% over hand-written-$level, within $allowed%"
done

step "future sizes (size_of, bytes, printed by the firmware; task pool: the static embassy task)"
echo "| build | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | all eight | task pool |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for build in "${BUILDS[@]}"; do
    read -r name _ <<<"$build"
    futures=$(sed -n 's/^size_of future, .* = \([0-9]*\) bytes\r*$/\1/p' "$OUTPUTS/$name" | paste -sd '|' - | sed 's/|/ | /g')
    pool=$("$LLVM_NM" --print-size "$ELVES/$name" | awk '/__embassy_main.*POOL/ { print $2 }')
    echo "| $name | $futures | $((16#${pool:-0})) |"
done
step "firmware passed"
