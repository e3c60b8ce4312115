#!/usr/bin/env bash
# Renders every chapter of the built book in headless Chromium (Debian's `chromium`) at
# 1280 px and fails if any page overflows horizontally: an element of <main> that reaches
# past main's right edge without a scrolling ancestor (mdBook's table-wrapper, a <pre>), or
# a page wider than the window. CI does not run it; run it by hand before changing the book.
#
#   bash book/check-render.sh               # build with `cargo test --test book`, then check
#   SHOTS=x86-pmu,measuring bash book/check-render.sh   # also PNG screenshots into $OUT/shots
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
[ -x /usr/bin/chromium ] || { echo "no /usr/bin/chromium: apt-get install -y chromium" >&2; exit 2; }

# The book's own test builds it; VPMU_BOOK_OUT keeps the HTML.
rm -rf "$OUT/html" && mkdir -p "$OUT/html"
VPMU_BOOK_OUT="$OUT/html" cargo test -q --test book the_book_builds_and_all_its_references_resolve >/dev/null

chrome() {
  /usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d)" --window-size=1280,900 --hide-scrollbars \
    --allow-file-access-from-files --virtual-time-budget=3000 "$@" 2>/dev/null
}

# The probe: appended to a copy of each page, it writes its verdict into the DOM.
read -r -d '' PROBE <<'JS' || true
<script>
window.addEventListener('load', () => {
  const main = document.querySelector('main');
  const edge = main.getBoundingClientRect().right + 1;
  const bad = [];
  for (const el of main.querySelectorAll('*')) {
    if (el.getBoundingClientRect().right <= edge) continue;
    let a = el.parentElement, held = false;
    while (a && a !== main.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden') { held = true; break; }
      a = a.parentElement;
    }
    if (!held) bad.push(el.tagName.toLowerCase() + ':' + (el.textContent || '').trim().slice(0, 40));
  }
  const page = Math.max(0, document.documentElement.scrollWidth - window.innerWidth);
  const scrolling = [...main.querySelectorAll('.table-wrapper, pre, pre > code')]
    .filter(e => e.scrollWidth > e.clientWidth + 1).length;
  const r = document.createElement('div');
  r.id = 'render-verdict';
  r.textContent = 'VERDICT page_overflow=' + page + ' unheld=' + bad.length +
    ' scrolling_boxes=' + scrolling + (bad.length ? ' first=' + bad.slice(0, 3).join(' | ') : '');
  document.body.appendChild(r);
});
</script>
JS

status=0
for page in "$OUT"/html/*.html; do
  name=$(basename "$page" .html)
  case $name in 404|print|toc|index) continue;; esac
  probe="$OUT/html/.probe-$name.html"
  { cat "$page"; printf '%s\n' "$PROBE"; } > "$probe"
  verdict=$(chrome --dump-dom "file://$probe" | grep -o 'id="render-verdict">VERDICT[^<]*' | sed 's/.*>VERDICT //' || echo "none")
  rm -f "$probe"
  echo "$name: $verdict"
  case $verdict in
    *"page_overflow=0 unheld=0"*) ;;
    *) status=1 ;;
  esac
done

if [ -n "${SHOTS:-}" ]; then
  mkdir -p "$OUT/shots"
  for name in ${SHOTS//,/ }; do
    chrome --window-size=1280,1600 --screenshot="$OUT/shots/$name.png" "file://$OUT/html/$name.html" >/dev/null
    echo "screenshot: $OUT/shots/$name.png"
  done
fi
[ $status = 0 ] && echo "no horizontal overflow at 1280 px" || echo "horizontal overflow found" >&2
exit $status
