// Text into markup: one escaper for the SVG charts and the HTML reports, since both put user-supplied strings
// (series names, captions, class labels) into content and attribute values.

/** Escapes text for XML/HTML content and quoted attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => replacements[c]!);
}

const replacements: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
