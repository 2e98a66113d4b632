// Posting a job from the page needs the Nostr library bundle (scripts/web-bundle); this file is
// replaced by the posting flow.
"use strict";
(function () {
  if (!window.SCNostr) {
    document.getElementById("post-unavailable").hidden = false;
    document.getElementById("post-submit").disabled = true;
  }
})();
