/* Coin Spotter: "Speak result" (the clientside callbacks in web-app/callbacks.py).
 *
 * Reads the sentence the live region announces ("2 coins: 1 Euro, 50 Euro Cent; total 1.50 EUR.") aloud with
 * the browser's own speech synthesis, in the page's language (its <html lang>, else the browser's). Nothing
 * goes to a server. Where the browser has no speech synthesis the button stays, disabled, and says why.
 */
(function () {
  const NO_SPEECH = "Your browser cannot read aloud: it has no speech synthesis.";

  function synthesis() {
    return window.speechSynthesis && typeof window.SpeechSynthesisUtterance === "function"
      ? window.speechSynthesis : null;
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    coinspotterSpeech: {
      /* Outputs [speak-bar hidden, speak disabled, speak title, speak-note children]: shown once there is a
       * result to read. */
      offer: function (sentence) {
        if (!sentence) return [true, true, "", ""];
        return synthesis() ? [false, false, "Read the result aloud", ""] : [false, true, NO_SPEECH, NO_SPEECH];
      },
      /* Outputs spoken.data: the sentence handed to the speech synthesis. */
      speak: function (clicks, sentence) {
        const speech = synthesis();
        if (!clicks || !sentence || !speech) return window.dash_clientside.no_update;
        const utterance = new window.SpeechSynthesisUtterance(String(sentence));
        utterance.lang = document.documentElement.lang || navigator.language || "en";
        speech.cancel();  // a second press starts again instead of queueing the same words
        speech.speak(utterance);
        return String(sentence);
      },
    },
  });
})();
