"""Accessibility checks run inside the page (no network, no axe download): labels, focus order,
visible focus and text contrast (WCAG 2.1 AA: 4.5:1, 3:1 for large text)."""

from __future__ import annotations

from typing import Any

LABELS = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    if (el.labels.length === 0 && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
      bad.push('control without a label: ' + (el.name || el.id));
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    const name = (el.getAttribute('aria-label') || el.textContent || '').trim();
    if (!name) bad.push('button or link without a name: ' + el.outerHTML.slice(0, 80));
  }
  for (const el of document.querySelectorAll('[role=img]')) {
    if (!el.getAttribute('aria-label')) bad.push('image without a text alternative');
  }
  for (const el of document.querySelectorAll('[tabindex]')) {
    if (parseInt(el.getAttribute('tabindex'), 10) > 0)
      bad.push('positive tabindex breaks the focus order: ' + el.outerHTML.slice(0, 80));
  }
  if (!document.documentElement.lang) bad.push('no lang on <html>');
  if (!document.title.trim()) bad.push('no title');
  return bad;
}"""

CONTRAST = """() => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(s => parseFloat(s));
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c;
    }
    return {r: 255, g: 255, b: 255, a: 1};
  };
  const bad = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('svg, .js-plotly-plot, noscript, .sr-only, .skip')) continue;
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const s = getComputedStyle(el);
    if (s.visibility === 'hidden' || s.display === 'none' || el.getClientRects().length === 0) continue;
    const fg = parse(s.color), bg = background(el);
    if (!fg) continue;
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(s.fontSize), bold = parseInt(s.fontWeight, 10) >= 700;
    const need = (size >= 24 || (size >= 18.66 && bold)) ? 3 : 4.5;
    const what = `${el.tagName.toLowerCase()} "${el.textContent.trim().slice(0, 40)}"`;
    if (ratio < need) bad.push(`contrast ${ratio.toFixed(2)} < ${need}: ${what}`);
  }
  return bad;
}"""

FOCUSED = """() => { const el = document.activeElement; if (!el || el === document.body) return null;
  const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
  return {tag: el.tagName, text: (el.textContent || el.name || '').trim().slice(0, 30),
          visible: r.width > 0 && r.height > 0,
          outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0,
          index: [...document.querySelectorAll('*')].indexOf(el)}; }"""


TOP = """() => { const start = document.createElement('span'); start.tabIndex = -1; start.id = 'a11y-start';
  document.body.prepend(start); start.focus(); }"""


def problems(page: Any, tabs: int = 25) -> list[str]:
    """What fails on the page as it is now: labels, names, focus order and visibility, contrast."""
    found: list[str] = list(page.evaluate(LABELS)) + list(page.evaluate(CONTRAST))
    page.evaluate(TOP)  # the keyboard starts from the top of the page, as after loading it
    last = -1
    for i in range(tabs):
        page.keyboard.press("Tab")
        f = page.evaluate(FOCUSED)
        if f is None:
            break
        if i == 0 and f["text"] != "Skip to content":
            found.append(f"the first Tab reaches {f['text']!r}, not the skip link")
        if f["index"] == last:  # the next part of the same control (a date's day, month and year)
            continue
        if not f["visible"]:
            found.append(f"Tab {i + 1} focuses an invisible {f['tag']} {f['text']!r}")
        if not f["outline"]:
            found.append(f"Tab {i + 1}: no visible focus on {f['tag']} {f['text']!r}")
        if f["index"] < last:  # the keyboard goes back up the page: the focus order is not the reading order
            found.append(f"Tab {i + 1} goes back up the page to {f['tag']} {f['text']!r}")
        last = f["index"]
    page.evaluate("() => document.getElementById('a11y-start')?.remove()")
    return found
