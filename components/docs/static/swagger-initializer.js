// Starts Swagger UI on the Conduit API's OpenAPI document.
//
// The document and every "Try it out" call go to the origin that served this
// page, so the page works unchanged behind nginx, on SpinKube or on a laptop.
// The API expects `Authorization: Token <jwt>`; the two interceptors below make
// that easy: a token pasted into "Authorize" without the `Token ` prefix gets
// it, and a successful login or registration made with "Try it out" authorizes
// the page with the token it returned.
"use strict";

const OPENAPI_URL = "/api/openapi.json";
const TOKEN_PREFIX = "Token ";

function headerName(headers, wanted) {
  return Object.keys(headers || {}).find((name) => name.toLowerCase() === wanted);
}

function addTokenPrefix(request) {
  const name = headerName(request.headers, "authorization");
  if (name) {
    const value = String(request.headers[name]).trim();
    // A bare JWT has no space; anything else (already "Token ...", or another
    // scheme) is left as the user typed it.
    if (value && !value.includes(" ")) {
      request.headers[name] = TOKEN_PREFIX + value;
    }
  }
  return request;
}

// The apiKey schemes that carry the token in the Authorization header, by name.
function tokenSchemes() {
  const definitions = window.ui.specSelectors.securityDefinitions();
  if (!definitions) {
    return [];
  }
  return definitions
    .filter((scheme) => scheme.get("type") === "apiKey" && scheme.get("in") === "header"
      && String(scheme.get("name")).toLowerCase() === "authorization")
    .keySeq()
    .toArray();
}

function rememberToken(response) {
  try {
    const path = new URL(response.url, window.location.href).pathname;
    const isLogin = /\/users(\/login)?$/.test(path);
    const token = response.ok && response.body && response.body.user && response.body.user.token;
    if (isLogin && typeof token === "string") {
      for (const scheme of tokenSchemes()) {
        window.ui.preauthorizeApiKey(scheme, TOKEN_PREFIX + token);
      }
    }
  } catch (error) {
    // Convenience only: never let it break the response display.
    console.warn("could not remember the token", error);
  }
  return response;
}

window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: OPENAPI_URL,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "BaseLayout",
    // The public validator badge would send the document to a third party.
    validatorUrl: null,
    persistAuthorization: true,
    displayRequestDuration: true,
    requestInterceptor: addTokenPrefix,
    responseInterceptor: rememberToken,
  });
});
