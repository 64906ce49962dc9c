/* Coin Spotter: which currency the page shows values in (the clientside callback in web-app/callbacks.py).
 *
 * A currency the user picked is remembered in the browser (dcc.Store "currency-choice", localStorage) and wins.
 * Otherwise the browser's preferred languages decide: the region of a tag (de-DE -> DE -> EUR), or, for a tag
 * without a region, a language spoken mainly in one currency area (ja -> JPY); else US dollars.
 * Only currencies the selector offers are ever chosen.
 */
(function () {
  const FALLBACK = "USD";
  const EURO_AREA = [  // euro members (Bulgaria from 2026) and the states using the euro by agreement
    "AT", "BE", "BG", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT", "LT", "LU", "LV", "MT", "NL",
    "PT", "SI", "SK", "AD", "MC", "SM", "VA", "ME", "XK",
  ];
  const REGION_CURRENCY = Object.assign(Object.fromEntries(EURO_AREA.map((region) => [region, "EUR"])), {
    US: "USD", PR: "USD", EC: "USD", SV: "USD", GB: "GBP", IM: "GBP", JE: "GBP", GG: "GBP", JP: "JPY",
    AU: "AUD", CA: "CAD", CH: "CHF", LI: "CHF", CN: "CNY", HK: "HKD", NZ: "NZD", SE: "SEK", KR: "KRW",
    SG: "SGD", NO: "NOK", MX: "MXN", IN: "INR", RU: "RUB", ZA: "ZAR", TR: "TRY", BR: "BRL", TW: "TWD",
    DK: "DKK", GL: "DKK", FO: "DKK", PL: "PLN", TH: "THB", ID: "IDR", HU: "HUF", CZ: "CZK", IL: "ILS",
    CL: "CLP", PH: "PHP", AE: "AED", CO: "COP", SA: "SAR", MY: "MYR", RO: "RON", IS: "ISK", PK: "PKR",
  });
  const LANGUAGE_CURRENCY = {  // only languages whose speakers mostly share one currency ("en", "es" do not)
    ja: "JPY", ko: "KRW", th: "THB", he: "ILS", pl: "PLN", cs: "CZK", hu: "HUF", sv: "SEK", da: "DKK",
    nb: "NOK", nn: "NOK", no: "NOK", is: "ISK", tr: "TRY", id: "IDR", ro: "RON", ru: "RUB", hi: "INR",
    de: "EUR", fi: "EUR", et: "EUR", lv: "EUR", lt: "EUR", sk: "EUR", sl: "EUR", hr: "EUR", el: "EUR",
    nl: "EUR", it: "EUR", fr: "EUR",
  };

  function currencyForLanguages(languages, offered) {
    for (const tag of languages) {
      const parts = String(tag || "").split(/[-_]/);
      const region = parts.slice(1).find((part) => /^[A-Za-z]{2}$/.test(part));  // zh-Hant-TW -> TW
      const candidates = [region && REGION_CURRENCY[region.toUpperCase()], LANGUAGE_CURRENCY[parts[0].toLowerCase()]];
      const found = candidates.find((code) => code && offered.includes(code));
      if (found) return found;
    }
    return FALLBACK;
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    coinspotter: {
      /* Outputs [currency.value, currency-choice.data]. A change of the selector is the user's choice (this
       * callback is the only other writer of the value, and Dash never re-triggers a callback with its own
       * output): remember it. Otherwise (page load, the store read back from localStorage): apply the
       * remembered choice, or the languages' default. */
      chooseCurrency: function (value, storedAt, stored, options) {
        const noUpdate = window.dash_clientside.no_update;
        const offered = (options || []).map((option) => option.value);
        const triggered = window.dash_clientside.callback_context.triggered.map((input) => input.prop_id);
        if (triggered.includes("currency.value")) {
          return [noUpdate, value === stored ? noUpdate : value];
        }
        const languages = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
        const wanted = offered.includes(stored) ? stored : currencyForLanguages(languages, offered);
        return [wanted === value ? noUpdate : wanted, noUpdate];
      },
    },
  });
})();
