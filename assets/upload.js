/* Coin Spotter: what the browser sends to the classifier (the clientside callback in web-app/callbacks.py).
 *
 * The chosen files go on as they are, unless the request would be over a limit the server enforces anyway
 * (files per request, bytes per request): then only their names and sizes go, and the server answers
 * with a message saying which limit, instead of the page sending tens of megabytes to be refused.
 * A photo over the per-photo limit (COINSPOTTER_MAX_FILE_BYTES, handed over as limits.max_bytes_per_file) is
 * held back on its own: its content goes as null, its size as it is, and the server answers that photo's card
 * with its message ("The file is 30 MB; the limit is 15 MB per photo.") beside the others' results.
 * Each file's other problems (not an image, damaged) are the server's to report, per file.
 */
(function () {
  // decoded size of a data URL's base64 payload: 3 bytes per 4 characters, less the padding
  function payloadBytes(dataUrl) {
    const text = String(dataUrl || "");
    const length = text.length - text.indexOf(",") - 1;
    const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
    return Math.max(0, Math.floor((length * 3) / 4) - padding);
  }

  // The drop zone's own file input is invisible but focusable: an unnamed second tab stop right after the
  // "Take a photo or choose photos" button, which opens the same chooser. Out of the tab order it goes,
  // whenever Dash (re)draws it.
  new MutationObserver(function () {
    const input = document.querySelector("#upload input[type=file]");
    if (input && input.tabIndex !== -1) input.tabIndex = -1;
  }).observe(document.documentElement, { childList: true, subtree: true });

  // Enter on "Take a photo or choose photos" opens the chooser straight from the key press. Left to itself,
  // Enter makes a click that has to bubble through the drop zone's React handler, and in Chromium that
  // click's chooser was sometimes never shown (Space, whose click comes on key-up, always was).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || event.repeat || !event.target || event.target.id !== "choose-photos") return;
    const input = document.querySelector("#upload input[type=file]");
    if (!input) return;
    event.preventDefault();
    input.value = "";
    input.click();
  });

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    coinspotterUpload: {
      /* Outputs upload-batch.data: {names, sizes, contents}; contents null when held back. */
      prepareUpload: function (contents, filenames, limits) {
        if (!contents) return window.dash_clientside.no_update;
        const given = Array.isArray(contents) ? contents : [contents];
        const givenNames = (Array.isArray(filenames) ? filenames : [filenames]).map((name) => String(name || ""));
        // dcc.Upload lists the files in the order its FileReaders happen to finish, not the order chosen, so
        // the same photos could come back in a different order each time. File-name order (IMG_2 before
        // IMG_10) is the same every time and, for a phone's photos, the order they were taken.
        const order = given.map((_, index) => index).sort((a, b) =>
          givenNames[a].localeCompare(givenNames[b], undefined, { numeric: true, sensitivity: "base" }) || a - b);
        const all = order.map((index) => given[index]);
        const names = order.map((index) => givenNames[index]);
        const sizes = all.map(payloadBytes);
        const perPhoto = limits.max_bytes_per_file;
        const tooLarge = sizes.map((size) => Number.isFinite(perPhoto) && size > perPhoto);
        const sent = all.map((content, index) => (tooLarge[index] ? null : content));
        const total = sizes.reduce((sum, size, index) => sum + (tooLarge[index] ? 0 : size), 0);
        const fits = all.length <= limits.max_files && total <= limits.page_upload_bytes;
        return { names: names, sizes: sizes, contents: fits ? sent : null };
      },
    },
  });
})();
