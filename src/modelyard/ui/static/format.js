// Modelyard.fmt: how the dashboard writes a number, the mirror of modelyard.ui.look.fmt (the
// Jinja filter ``fmt``). The same rules, case by case; tests/ui/test_look_browser.py runs both
// over one table of cases. Units: "" plain, "count", "%" (a ratio), "ms", "/s", "bytes".
"use strict";

window.Modelyard = (function () {
  const DASH = "–";

  // Rounded half away from zero on the exact value (toFixed), with thousands separators.
  function fixed(value, digits) {
    const text = Math.abs(value).toFixed(digits);
    const [whole, frac] = text.split(".");
    const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    const sign = value < 0 && Number(text) !== 0 ? "-" : "";
    return sign + grouped + (frac === undefined ? "" : "." + frac);
  }

  function plain(value) {
    const size = Math.abs(value);
    if (size === 0) return "0";
    if (size >= 1000) return fixed(value, 0);
    if (size >= 100) return fixed(value, 1);
    if (size >= 1) return fixed(value, 2);
    if (size >= 0.001) return fixed(value, 3);
    return value.toExponential(2).replace("e+", "e");
  }

  function fmt(value, unit) {
    unit = unit || "";
    if (typeof value === "string") return value || DASH;
    if (typeof value !== "number" || !Number.isFinite(value)) return DASH;
    if (unit === "count") return fixed(value, 0);
    if (unit === "%") {
      const share = value * 100;
      if (share === 0) return "0 %";
      return fixed(share, Math.abs(share) < 1 ? 2 : 1) + " %";
    }
    if (unit === "ms") {
      const size = Math.abs(value);
      if (size === 0) return "0 ms";
      if (size >= 10000) return fixed(value / 1000, 1) + " s";
      return fixed(value, size < 1 ? 2 : size < 100 ? 1 : 0) + " ms";
    }
    if (unit === "/s") return plain(value) + "/s";
    if (unit === "bytes") {
      const mib = value / 1048576;
      return Math.abs(mib) >= 1024 ? fixed(mib / 1024, 1) + " GiB" : fixed(mib, 1) + " MiB";
    }
    if (Number.isInteger(value) && Math.abs(value) < 1e15) return fixed(value, 0);
    return plain(value);
  }

  return { fmt, DASH, FLAG: "⚑" };
})();
