// Usage: PLOTLY_VERSION=4.1.1 node scripts/plotly-css.js package/plotly-basic.min.js static/vendor/plotly.css
// Writes plotly.css: the rules plotly.js would inject into a <style> element
// at load time (which a style-src 'self' policy forbids), taken from the bundle.
const fs = require("fs"), vm = require("vm");
const [bundle, out] = process.argv.slice(2);
const s = fs.readFileSync(bundle, "utf8");
const start = s.indexOf('{"X,X div":'), end = s.indexOf("};for(", start) + 1;
if (start < 0 || end <= 0) throw new Error("plotly's style rules were not found in " + bundle);
const rules = vm.runInNewContext("(" + s.slice(start, end) + ")");
let css = "/* plotly.js " + process.env.PLOTLY_VERSION + " global styles, extracted from " + require("path").basename(bundle) + " (see README.md) */\n";
for (const key in rules) {
  const selector = key.replace(/^,/, " ,").replace(/X/g, ".js-plotly-plot .plotly").replace(/Y/g, ".plotly-notifier");
  css += selector + "{" + rules[key] + "}\n";
}
fs.writeFileSync(out, css);
console.log(Object.keys(rules).length + " rules");
