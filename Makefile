# ferry - a plain Makefile.  Every knob is ?= so a distribution or the
# OpenWrt SDK can override it.  Objects live under build/<target>/ so the
# native, sanitizer and cross builds never mix.
#
#   make                  ./ferry
#   make run              install what is missing, build, run in the foreground
#   make test             install what is missing, build, run every test
#   make CROSS=mipsel-linux-gnu      build/mipsel-linux-gnu/ferry
#   make test-compat      build and test against mbedTLS 3.6, c-ares 1.34
#   make test-cross       unit tests of the cross builds under qemu-user
#   make install DESTDIR=... PREFIX=...

PREFIX	?= /usr/local
SBINDIR	?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
DESTDIR	?=
CROSS	?=
SENDMAIL_LINKS ?= 1

ifneq ($(CROSS),)
CC	:= $(CROSS)-gcc
TARGET	:= $(CROSS)
else
CC	?= cc
# One object directory per compiler: gcc's LTO objects are no use to clang.
TARGET	?= $(if $(findstring clang,$(CC)),clang,native)
endif
STRIP	?= $(if $(CROSS),$(CROSS)-strip,strip)

# Size is a budget (150 KB stripped on x86-64): -Oz (gcc 12, clang) is
# ~3% smaller than -Os; the hot paths are system calls, not code.
OPT	?= -Oz
# C needs no unwind tables: dropping them saves ~13% of the binary.
# Sections per function let the linker drop what nothing calls;
# -fno-plt calls libraries through the GOT (no PLT stubs, 1.6 KB).
CFLAGS	?= $(OPT) -g -fno-asynchronous-unwind-tables -fno-unwind-tables \
	   -ffunction-sections -fdata-sections -fno-plt
# Link-time optimisation: ferry is one program, so the compiler inlines and
# drops code across files (~4 KB).  "make LTO=" builds without it.  The
# archive indexes the LTO objects through gcc-ar (LIBAR below).
LTO	?= $(if $(findstring clang,$(CC)),-flto,-flto=auto)
WARN	:= -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	   -Wmissing-prototypes -Wpointer-arith -Wcast-qual -Wformat=2 \
	   -Wno-format-nonliteral
CPPFLAGS ?=
# 32-bit targets (mipsel, armhf) need 64-bit off_t/ino_t for readdir on
# big file systems; time_t stays as the libraries were built.
CPPFLAGS += -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64
# The relay.conf that ferry reads without -c is the one install writes:
# $(SYSCONFDIR)/ferry/relay.conf (config.h).
CPPFLAGS += -DFERRY_SYSCONFDIR='"$(SYSCONFDIR)"'
# noseparate-code: no page of padding between the code and the data
# segments (RELRO and PIE stay).  No spare .dynamic slots (80 bytes of
# RELRO, which ends on a page: the code may end that much later before
# the file grows a page) and no .eh_frame_hdr with its program header (76
# bytes): ferry has no unwind tables for it to index, and nothing
# unwinds (no C++, no threads to cancel).
LDFLAGS	?= -Wl,--gc-sections -Wl,-z,noseparate-code $(NOSPARE) \
	   -Wl,--no-eh-frame-hdr $(RELR)
# Not for the cross builds: arm's ld (binutils 2.40) then drops the
# DT_NULL that ends .dynamic, which is read on into the GOT.
NOSPARE	:= $(if $(CROSS),,-Wl,--spare-dynamic-tags=0)
# DT_RELR (binutils 2.38, glibc 2.36): PIE's relocations take a few
# hundred bytes instead of ~8 KB.  Used where the native linker has it.
RELR	:= $(if $(CROSS),,$(shell printf 'int main(void){return 0;}' | \
	   $(CC) -x c -Wl,-z,pack-relative-relocs -o /dev/null - \
	   >/dev/null 2>&1 && echo -Wl,-z,pack-relative-relocs))
LDLIBS	?= -lmbedtls -lmbedx509 -lmbedcrypto -lcares -lsodium
# Code generation, each flag where the compiler takes it (clang only the
# first; the cross compilers all but the two x86 ones, 4 KB less on
# mipsel and armhf too).  No floating point anywhere in
# ferry: general registers only, so a varargs function (log_*, the
# printf-like helpers) no longer spills the eight SSE argument registers
# on entry (1.4 KB in all).  Arrays of 32 bytes and more aligned as the
# ABI says, not to 32 for vector loads (220 bytes).  Then speed habits
# that -Oz keeps, measured on ferry with gcc 12, whose hot paths are
# system calls: inlining small functions (250 bytes), values kept in
# call-clobbered registers and saved around each call (760), branches
# made conditional moves (300), blocks copied to thread jumps (1.2 KB),
# loop invariants hoisted (800), and six that are worth 500 bytes
# together (shrink-wrapping, tail merging, code hoisting, dominator
# optimisations, jump tables, strength reduction).  The program's
# objects only: the unit
# tests time things in doubles.
cc_has	= $(shell $(CC) -Werror $(1) -x c -c -o /dev/null /dev/null \
	  >/dev/null 2>&1 && echo $(1))
CODEGEN	:= $(foreach f,-mgeneral-regs-only -malign-data=abi \
	   -fno-inline-small-functions -fno-caller-saves -fno-if-conversion \
	   -fno-thread-jumps -fno-move-loop-invariants -fno-tree-loop-im \
	   -fno-shrink-wrap -fno-tree-tail-merge -fno-code-hoisting \
	   -fno-tree-dominator-opts -fno-jump-tables -fno-tree-slsr, \
	   $(call cc_has,$(f)))
# The native gcc build (the budget's), measured with gcc 12 on x86-64:
# calls in tail position kept as calls, not jumps that make the caller
# restore its registers and frame first (670 bytes); no full redundancy
# elimination (-fno-tree-fre, 40); code hoisting back on with these two
# (50); no phi propagation of loads (20); null checks kept after a
# dereference instead of dropped, which also spares the paths gcc
# would have isolated (50); LTO in one partition, so no function is
# copied into two (300); no unwind tables for the linker's PLT
# stubs, which nothing unwinds through (100); and printf() of a fixed
# line left a printf(), not made puts(), one import less (60; gcc then
# checks printf()'s formats only in the san and unit builds, which
# have no CODEGEN).  Not measured on the cross targets, so not taken
# there.
ifeq ($(TARGET),native)
CODEGEN	:= $(filter-out -fno-code-hoisting,$(CODEGEN)) \
	   $(foreach f,-fno-optimize-sibling-calls -fno-tree-fre \
	   -fno-tree-phiprop -fno-delete-null-pointer-checks \
	   -fno-builtin-printf, \
	   $(call cc_has,$(f)))
ifneq ($(LTO),)
LTO	+= -flto-partition=one
endif
LDFLAGS	+= -Wl,--no-ld-generated-unwind-info
endif
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
	    -fno-omit-frame-pointer

B	:= build/$(TARGET)

# Everything but main.c goes into a library the tests link.
LIBSRC	:= log.c loop.c io.c config.c addr.c cmd.c hdr.c queue.c smtp.c \
	   pickup.c msg.c cli.c \
	   dns.c deliver.c bounce.c sched.c alias.c auth.c tls.c textfile.c dane.c \
	   check.c net.c reply.c
SRC	:= main.c $(LIBSRC)
UNIT	:= $(patsubst test/unit/%.c,%,$(wildcard test/unit/*_test.c))
FUZZ	:= $(patsubst test/fuzz/%.c,%,$(wildcard test/fuzz/fuzz_*.c))

# ./ferry is the native gcc build; clang's and the cross builds stay in
# their own directory so `make CC=clang` never replaces it.
BIN	:= $(if $(filter native,$(TARGET)),ferry,$(B)/ferry)

all: $(BIN)

$(B)/%.o: %.c $(wildcard *.h) Makefile | $(B)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(CODEGEN) $(LTO) $(WARN) -c -o $@ $<

$(B):
	mkdir -p $@ $@/san $@/unit

# main.c is compiled again when SYSCONFDIR changes (`make`, then `make
# install SYSCONFDIR=...`): the stamp is rewritten only then.
$(B)/main.o $(B)/san/main.o: $(B)/sysconfdir
$(B)/sysconfdir: FORCE | $(B)
	@echo '$(SYSCONFDIR)' | cmp -s - $@ || echo '$(SYSCONFDIR)' >$@
FORCE:

# gcc-ar hands ar gcc's LTO plugin itself: a toolchain without a
# bfd-plugins link (OpenWrt's, whose rules.mk uses gcc-ar too) would
# otherwise write an archive with no index of the LTO objects.
LIBAR	= $(if $(findstring clang,$(CC)),ar,$(if $(CROSS),$(CROSS)-gcc-ar,gcc-ar))

$(B)/libferry.a: $(LIBSRC:%.c=$(B)/%.o)
	rm -f $@ && $(LIBAR) rcs $@ $^

$(BIN): $(B)/main.o $(B)/libferry.a
	$(CC) $(CFLAGS) $(LTO) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# --- unit tests: plain (run under valgrind) and ASan+UBSan -------------
$(B)/unit/%: test/unit/%.c test/unit/t.h $(B)/libferry.a
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LTO) $(WARN) $(LDFLAGS) -iquote . -o $@ $< $(B)/libferry.a $(LDLIBS)

$(B)/san/%.o: %.c $(wildcard *.h) Makefile | $(B)
	$(CC) $(CPPFLAGS) -O1 -g $(SANFLAGS) $(WARN) -c -o $@ $<

$(B)/san/libferry.a: $(LIBSRC:%.c=$(B)/san/%.o)
	rm -f $@ && ar rcs $@ $^

$(B)/san/ferry: $(B)/san/main.o $(B)/san/libferry.a
	$(CC) -g $(SANFLAGS) -o $@ $^ $(LDLIBS)

$(B)/san/unit-%: test/unit/%.c test/unit/t.h $(B)/san/libferry.a
	$(CC) $(CPPFLAGS) -O1 -g $(SANFLAGS) $(WARN) -iquote . -o $@ $< $(B)/san/libferry.a $(LDLIBS)

# The DNS driver for test/integration/test_dns.py.
$(B)/dnsq: test/dnsq.c $(B)/libferry.a
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LTO) $(WARN) -iquote . -o $@ $< $(B)/libferry.a $(LDLIBS)

$(B)/san/dnsq: test/dnsq.c $(B)/san/libferry.a
	$(CC) $(CPPFLAGS) -O1 -g $(SANFLAGS) $(WARN) -iquote . -o $@ $< $(B)/san/libferry.a $(LDLIBS)

unit: $(UNIT:%=$(B)/unit/%) $(B)/dnsq
san: $(B)/san/ferry $(UNIT:%=$(B)/san/unit-%) $(B)/san/dnsq

# The fuzz targets without libFuzzer: test/fuzz/replay.c runs each over
# its corpus, so test/cross.sh checks the parsers on big-endian s390x and
# test/run.sh under valgrind.
$(B)/replay/%: test/fuzz/%.c test/fuzz/replay.c $(B)/libferry.a
	@mkdir -p $(B)/replay
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LTO) $(WARN) $(LDFLAGS) -iquote . -o $@ $< test/fuzz/replay.c $(B)/libferry.a $(LDLIBS)
replay: $(FUZZ:%=$(B)/replay/%)

# --- fuzz targets (clang, libFuzzer) -----------------------------------
FUZZCC	?= clang
build/fuzz/%: test/fuzz/%.c $(LIBSRC) $(wildcard *.h)
	@mkdir -p build/fuzz
	$(FUZZCC) $(CPPFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined \
	    -iquote . -o $@ $< $(LIBSRC) $(LDLIBS)
fuzz: $(FUZZ:%=build/fuzz/%)

# --- the two set-up commands ------------------------------------------
deps:
	@sh test/deps.sh build

run: deps
	@$(MAKE) --no-print-directory all
	@sh test/run-default.sh

test: deps
	@sh test/deps.sh test
	@sh test/deps.sh cross
	@$(MAKE) --no-print-directory all unit san fuzz replay
	@sh test/run.sh

# mbedTLS 3.6 and c-ares 1.34 from Debian 13's packages (also in `make test`)
test-compat: all
	@sh test/compat.sh

# --- cross builds -------------------------------------------------------
CROSS_TARGETS ?= mipsel-linux-gnu arm-linux-gnueabihf s390x-linux-gnu
test-cross:
	@sh test/deps.sh cross
	@sh test/cross.sh $(CROSS_TARGETS)

# --- install ------------------------------------------------------------
# The queue is not under PREFIX: /var/spool/ferry, like Postfix's spool.
# As root, with the `user` of relay.conf (ferry) existing, the queue
# directories are given to it; otherwise they are made and a note says
# what to run (the daemon fixes owner and modes itself when it starts as
# root).  relay.conf is never overwritten; a new one names a QUEUEDIR
# other than the default (the unit lets the daemon write only there).
MANDIR	?= $(PREFIX)/share/man
UNITDIR	?= $(PREFIX)/lib/systemd/system
QUEUEDIR ?= /var/spool/ferry
Q	:= $(DESTDIR)$(QUEUEDIR)
QLINE	= $(if $(filter-out /var/spool/ferry,$(QUEUEDIR)),queue_dir = $(QUEUEDIR),&)

install: $(BIN)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/ferry \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BIN) $(DESTDIR)$(SBINDIR)/ferry
ifeq ($(SENDMAIL_LINKS),1)
	ln -sf ferry $(DESTDIR)$(SBINDIR)/sendmail
	ln -sf ferry $(DESTDIR)$(SBINDIR)/mailq
	ln -sf ferry $(DESTDIR)$(SBINDIR)/newaliases
endif
	[ -e $(DESTDIR)$(SYSCONFDIR)/ferry/relay.conf ] || \
	    [ -L $(DESTDIR)$(SYSCONFDIR)/ferry/relay.conf ] || \
	    { sed 's|^#queue_dir = /var/spool/ferry$$|$(QLINE)|' \
	    relay.conf.example >$(DESTDIR)$(SYSCONFDIR)/ferry/relay.conf && \
	    chmod 0644 $(DESTDIR)$(SYSCONFDIR)/ferry/relay.conf; }
	install -m 0644 doc/ferry.8 $(DESTDIR)$(MANDIR)/man8/ferry.8
	install -m 0644 doc/relay.conf.5 $(DESTDIR)$(MANDIR)/man5/relay.conf.5
	sed -e 's|/usr/sbin/ferry|$(SBINDIR)/ferry|' \
	    -e 's|/etc/ferry/|$(SYSCONFDIR)/ferry/|' \
	    -e 's|/var/spool/ferry|$(QUEUEDIR)|' \
	    contrib/systemd/ferry.service >$(DESTDIR)$(UNITDIR)/ferry.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/ferry.service
	install -d -m 0711 $(Q)
	install -d -m 0700 $(Q)/tmp $(Q)/corrupt
	install -d -m 1733 $(Q)/maildrop
# maildrop/ setgid (what sendmail leaves there takes ferry's group, 0640)
# only once that group is ferry's: until then sendmail leaves 0644, which
# the daemon reads in any group, and it sets the bit itself at start.
	@if [ "$$(id -u)" = 0 ] && id ferry >/dev/null 2>&1; then \
	    echo "chown ferry $(Q) $(Q)/tmp $(Q)/corrupt $(Q)/maildrop"; \
	    chown "ferry:$$(id -gn ferry)" $(Q) $(Q)/tmp $(Q)/corrupt \
	        $(Q)/maildrop && chmod 3733 $(Q)/maildrop; \
	else \
	    echo "note: $(Q) is not owned by user ferry; as root run:"; \
	    id ferry >/dev/null 2>&1 || \
	    echo "  useradd --system --home-dir $(QUEUEDIR)" \
	        "--no-create-home --shell /usr/sbin/nologin ferry"; \
	    echo "  chown ferry: $(Q) $(Q)/tmp $(Q)/corrupt $(Q)/maildrop"; \
	fi

clean:
	rm -rf build ferry

.PHONY: all deps run test unit san fuzz replay test-compat test-cross install clean FORCE
