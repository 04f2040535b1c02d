// kunjung pages: htmx requests carry the session's CSRF token; maps draw village boundaries and visit points.
(function () {
  "use strict";
  var csrf = document.body.getAttribute("data-csrf");
  document.body.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrf;
  });

  var COLOURS = {pending: "#d98e04", approved: "#2e7d32", needs_revision: "#6a1b9a", rejected: "#c62828"};
  var FLAGGED = "#e53935";

  function baseMap(element) {
    var map = L.map(element, {preferCanvas: true, zoomControl: true});
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

  // The overview map: boundaries, then visit points a page at a time (a canvas draws 10,000 at ease).
  function overview(element) {
    var map = baseMap(element);
    var count = document.getElementById("map-count");
    var shown = 0;
    var visitUrl = element.getAttribute("data-visit-url");
    var openLabel = element.getAttribute("data-open-label");
    var points = L.layerGroup().addTo(map);
    var bounds = null;
    getJSON(element.getAttribute("data-villages")).then(function (data) {
      var layer = boundaryLayer(data).addTo(map);
      layer.eachLayer(function (l) { l.bindTooltip(l.feature.properties.name); });
      if (data.features.length) { bounds = layer.getBounds(); map.fitBounds(bounds); }
    });
    function page(after) {
      var url = element.getAttribute("data-visits");
      url += (url.indexOf("?") < 0 ? "?" : "&") + (after ? "after=" + encodeURIComponent(after) : "");
      getJSON(url).then(function (data) {
        data.points.forEach(function (p) {
          var flagged = p[4].length > 0;
          var marker = L.circleMarker([p[1], p[2]], {
            radius: 5, weight: flagged ? 2 : 1, color: flagged ? FLAGGED : "#333",
            fillColor: COLOURS[p[3]] || "#777", fillOpacity: 0.9
          });
          marker.on("click", function () {
            var link = document.createElement("a");
            link.href = visitUrl.replace("VISIT", encodeURIComponent(p[0]));
            link.textContent = openLabel;
            var box = document.createElement("div");
            var info = document.createElement("div");
            info.textContent = (p[3] || "") + (flagged ? " · " + p[4].join(", ") : "");
            box.appendChild(info);
            box.appendChild(link);
            L.popup().setLatLng([p[1], p[2]]).setContent(box).openOn(map);
          });
          points.addLayer(marker);
        });
        shown += data.points.length;
        if (count) { count.textContent = String(shown); }
        if (!bounds && data.points.length) {
          map.setView([data.points[0][1], data.points[0][2]], 13);
          bounds = true;
        }
        if (data.next) { page(data.next); } else { element.setAttribute("data-loaded", "true"); }
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
