#!/usr/bin/env bash
# The book in both languages: English in docs/book, 简体中文 in docs/book/zh-CN
# (mdbook-gettext translates it with po/zh-CN.po).
#
#   book.sh build [en|zh-CN|all]  build one edition or both
#   book.sh po                    re-extract po/messages.pot from the English
#                                 book and merge it into po/zh-CN.po
#   book.sh check                 what CI runs: both editions build without a
#                                 WARN or ERROR, po/messages.pot is current, and
#                                 every message has a translation that is not fuzzy
set -euo pipefail
cd "$(dirname "$0")/.."

# The Chinese edition's title (book.toml holds the English one).
ZH_TITLE="Rust 套接字编程：从两篇 C 原文出发"

have() { command -v "$1" >/dev/null 2>&1; }
need() {
    for tool in "$@"; do
        if ! have "$tool"; then
            case "$tool" in
                mdbook) how="cargo install --locked mdbook" ;;
                mdbook-gettext | mdbook-xgettext) how="cargo install --locked mdbook-i18n-helpers" ;;
                *) how="apt-get install gettext" ;;
            esac
            echo "book.sh: \`$tool\` is not installed: $how" >&2
            exit 1
        fi
    done
}
# mdbook exits 0 even when an include fails: any WARN or ERROR line fails.
strict() { "$@" 2>&1 | awk '{ print } /^ *(WARN|ERROR)/ { bad = 1 } END { exit bad }'; }

build() {
    case "$1" in
        en) strict mdbook build docs ;;
        zh-CN) strict env MDBOOK_BOOK__LANGUAGE=zh-CN MDBOOK_BOOK__TITLE="$ZH_TITLE" mdbook build docs -d docs/book/zh-CN ;;
        *) echo "book.sh: no edition $1 (en, zh-CN)" >&2; exit 2 ;;
    esac
}

# The English book's messages, without line numbers (less churn), into $1.
extract() {
    MDBOOK_OUTPUT='{"xgettext": {"granularity": 0}}' mdbook build docs -d "$1" >/dev/null 2>&1
    [ -s "$1/messages.pot" ] || { echo "book.sh: mdbook-xgettext wrote no messages.pot" >&2; exit 1; }
}

case "${1:-build}" in
    build)
        lang=${2:-all}
        need mdbook
        if [ "$lang" = all ] || [ "$lang" = en ]; then build en; fi
        if [ "$lang" = all ] || [ "$lang" = zh-CN ]; then
            need mdbook-gettext
            build zh-CN
        fi
        ;;
    po)
        need mdbook mdbook-xgettext msgmerge
        extract "$PWD/po"
        msgmerge --quiet --update --backup=none po/zh-CN.po po/messages.pot
        # Code (blocks, comments of listings) is shown as it is: its own translation.
        COPY_CODE=1 cargo test -q -p book --test translation code_stays_as_the_programs_print_it >/dev/null
        echo "po/messages.pot re-extracted and merged into po/zh-CN.po; translate what is empty or fuzzy."
        ;;
    check)
        need mdbook mdbook-gettext mdbook-xgettext msgcmp
        fresh=$(mktemp -d)
        trap 'rm -rf "$fresh"' EXIT
        extract "$fresh"
        if ! msgcmp --use-untranslated po/messages.pot "$fresh/messages.pot" 2>/dev/null \
            || ! msgcmp --use-untranslated "$fresh/messages.pot" po/messages.pot 2>/dev/null; then
            echo "book.sh: po/messages.pot is not the English book's: run \`just po\` and translate what it marks" >&2
            exit 1
        fi
        if ! msgcmp po/zh-CN.po "$fresh/messages.pot"; then
            echo "book.sh: po/zh-CN.po lacks a translation above (empty or fuzzy): every English change carries its Chinese" >&2
            exit 1
        fi
        build en
        build zh-CN
        ;;
    *)
        echo "usage: book.sh build [en|zh-CN|all] | po | check" >&2
        exit 2
        ;;
esac
