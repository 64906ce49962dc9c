/* Coin Spotter: a card's "Show why" toggle (the clientside callback in web-app/callbacks.py).
 *
 * Opens or closes the card's panel (aria-expanded says which). The first time it opens, the coin's photo, still
 * in the "upload-batch" store from the upload, goes to the server with the coin's number, the model and the
 * "Coins from" hint; the server answers the heat map (callbacks.explain_coin). Later openings show the same
 * picture again: nothing is sent twice, and no coin is explained unless someone asks.
 */
(function () {
  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    coinspotterExplain: {
      /* Outputs [toggle aria-expanded, panel hidden, why-request data]. */
      toggle: function (clicks, expanded, coin, requested, batch) {
        const noUpdate = window.dash_clientside.no_update;
        if (!clicks) return [noUpdate, noUpdate, noUpdate];
        const open = expanded !== "true";
        let request = noUpdate;
        const contents = batch && Array.isArray(batch.contents) ? batch.contents : [];
        if (open && !requested && coin && Number.isInteger(coin.photo) && contents[coin.photo]) {
          request = {
            name: String((batch.names || [])[coin.photo] || ""),
            content: contents[coin.photo],
            coin: coin.coin,
            model: coin.model,
            currencies: coin.currencies || null,  // the "Coins from" hint the card was classified with
          };
        } else if (open && !requested) {
          request = { missing: "photo" };  // gone (a newer upload replaced it): the server says so in the panel
        }
        return [open ? "true" : "false", !open, request];
      },
    },
  });
})();
