// HMS GraphiQL bootstrap. A file, not an inline script, so the page's CSP can allow only 'self'.
// Options come from the inert JSON block the server renders (hms/http/graphiql.py):
// {url, headers, hospital, styleNonce}; headers carry a demo token in dev, are empty otherwise.
(function () {
  'use strict';

  var config = JSON.parse(document.getElementById('hms-graphiql-config').textContent);
  var headers = Object.keys(config.headers).length
    ? JSON.stringify(config.headers, null, 2)
    : undefined;

  // GraphiQL's storage, under our own namespace and without request headers. GraphiQL 4.1.2
  // honours shouldPersistHeaders=false for its tabs, but still saves each run's headers in its
  // history ("queries", "favorites"), which would leave a bearer token in localStorage.
  function headerFreeStorage(namespace) {
    var store = GraphiQL.createLocalStorage({namespace: namespace});
    var withHeaders = /(^|:)(queries|favorites|tabState)$/;
    function scrub(key, value) {
      if (/(^|:)headers$/.test(key)) return null;
      if (!withHeaders.test(key)) return value;
      try {
        // null, not absent: GraphiQL discards saved tabs that lack a headers field.
        return JSON.stringify(JSON.parse(value), function (k, v) {
          return k === 'headers' ? null : v;
        });
      } catch (e) {
        return null;
      }
    }
    return {
      getItem: store.getItem,
      removeItem: store.removeItem,
      clear: store.clear,
      get length() {
        return store.length;
      },
      setItem: function (key, value) {
        var clean = scrub(key, value);
        if (clean === null) store.removeItem(key);
        else store.setItem(key, clean);
      },
    };
  }

  // The server does not stream (@defer/@stream), so plain JSON POSTs. GraphiQL 4.1.2 introspects
  // on mount, before its header editor exists, so that request carries no headers and fails
  // authentication; give introspection alone the pre-filled headers when it has none.
  var post = GraphiQL.createFetcher({url: config.url, enableIncrementalDelivery: false});
  function fetcher(params, options) {
    if (params.operationName === 'IntrospectionQuery' && !(options && options.headers)) {
      options = Object.assign({}, options, {headers: config.headers});
    }
    return post(params, options);
  }

  // The one <style> element GraphiQL injects (react-remove-scroll, when a dialog opens) takes its
  // nonce from this global; the page's CSP admits that nonce and no other inline style.
  window.__webpack_nonce__ = config.styleNonce;

  if (config.hospital) document.title = 'HMS GraphiQL · ' + config.hospital;

  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      plugins: [GraphiQLPluginExplorer.explorerPlugin()],
      defaultHeaders: headers,
      defaultEditorToolsVisibility: headers ? 'headers' : false,
      shouldPersistHeaders: false,
      storage: headerFreeStorage('hms-graphiql'),
    })
  );
})();
