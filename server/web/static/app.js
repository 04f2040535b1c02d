// kunjung pages: htmx requests carry the session's CSRF token; maps draw village boundaries and visit points.
(function () {
  "use strict";
  var csrf = document.body.getAttribute("data-csrf");
  document.body.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrf;
  });

  var FLAGGED = "#e53935";

  function baseMap(element) {
    var map = L.map(element, {preferCanvas: true, zoomControl: true, maxZoom: 19});
    var tiles = element.getAttribute("data-tiles");
    if (tiles) {
      L.tileLayer(tiles, {maxZoom: 19}).addTo(map);
    }
    map.setView([-2.5, 118], 5);
    return map;
  }

  function getJSON(url) {
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}}).then(function (r) {
      if (!r.ok) { throw new Error(r.status); }
      return r.json();
    });
  }

  function boundaryLayer(geojson) {
    return L.geoJSON(geojson, {style: function () { return {color: "#1565c0", weight: 2, fillOpacity: 0.05}; }});
  }

  // The overview map: boundaries, then visit points a page at a time into a cluster layer, so that 10,000 stay
  // usable: a cluster says how many visits it holds and zooms in when clicked; a point opens its visit.
  function overview(element) {
    var map = baseMap(element);
    var count = document.getElementById("map-count");
    var shown = 0;
    var visitUrl = element.getAttribute("data-visit-url");
    var openLabel = element.getAttribute("data-open-label");
    var points = L.markerClusterGroup({showCoverageOnHover: false, maxClusterRadius: 60, animate: false});
    points.addTo(map);
    var bounded = false;
    map.on("zoomend", function () { element.setAttribute("data-zoom", String(map.getZoom())); });
    getJSON(element.getAttribute("data-villages")).then(function (data) {
      var layer = boundaryLayer(data).addTo(map);
      layer.eachLayer(function (l) { l.bindTooltip(l.feature.properties.name); });
      if (data.features.length && !bounded) { map.fitBounds(layer.getBounds()); }
    });
    function open(p, flagged) {
      var link = document.createElement("a");
      link.href = visitUrl.replace("VISIT", encodeURIComponent(p[0]));
      link.textContent = openLabel;
      link.className = "open-visit";
      var box = document.createElement("div");
      var info = document.createElement("div");
      info.textContent = (p[3] || "") + (flagged ? " · " + p[4].join(", ") : "");
      box.appendChild(info);
      box.appendChild(link);
      L.popup().setLatLng([p[1], p[2]]).setContent(box).openOn(map);
    }
    function pin(p) {
      var flagged = p[4].length > 0;
      var marker = L.marker([p[1], p[2]], {
        keyboard: false,
        icon: L.divIcon({className: "visit-pin state-" + (p[3] || "pending") + (flagged ? " flagged" : ""),
                         iconSize: [12, 12]})
      });
      marker.on("click", function () { open(p, flagged); });
      return marker;
    }
    function page(after) {
      var url = element.getAttribute("data-visits");
      url += (url.indexOf("?") < 0 ? "?" : "&") + (after ? "after=" + encodeURIComponent(after) : "");
      getJSON(url).then(function (data) {
        points.addLayers(data.points.map(pin));
        shown += data.points.length;
        if (count) { count.textContent = String(shown); }
        if (data.next) { page(data.next); return; }
        if (shown) { bounded = true; map.fitBounds(points.getBounds(), {padding: [20, 20], animate: false}); }
        element.setAttribute("data-zoom", String(map.getZoom()));
        element.setAttribute("data-loaded", "true");
      });
    }
    page(null);
  }

  // A visit's geotag against its village boundary.
  function single(element) {
    var map = baseMap(element);
    getJSON(element.getAttribute("data-source")).then(function (data) {
      var group = [];
      if (data.boundary) { group.push(boundaryLayer(data.boundary).addTo(map)); }
      if (data.geotag) {
        var at = [data.geotag.lat, data.geotag.lon];
        L.circleMarker(at, {radius: 7, color: "#000", fillColor: FLAGGED, fillOpacity: 0.9}).addTo(map);
        if (data.geotag.accuracy_m) { L.circle(at, {radius: data.geotag.accuracy_m, weight: 1}).addTo(map); }
        map.setView(at, 15);
      }
      if (group.length) { map.fitBounds(group[0].getBounds().extend(data.geotag ? [data.geotag.lat, data.geotag.lon] : group[0].getBounds())); }
      element.setAttribute("data-loaded", "true");
    });
  }

  function start() {
    if (typeof L === "undefined") { return; }
    var overviewElement = document.getElementById("map");
    if (overviewElement) { overview(overviewElement); }
    var visitElement = document.getElementById("visit-map");
    if (visitElement) { single(visitElement); }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
