import Common
import HTTPCore
import OAuth

/// OAuth 2.0 Form Post Response Mode §2: a page whose form POSTs the
/// authorization response to the client's redirect URI. Under a strict
/// CSP: the one script that submits the form runs by its nonce (nothing
/// else can), `form-action` allows only the redirect URI's origin, and a
/// button submits it in a browser without script.
enum FormPostPage {
    /// The response's fields as hidden inputs of a form.
    static func hiddenInputs(_ r: AuthorizationResponse) -> String {
        r.fields.map { "<input type=\"hidden\" name=\"\(XMLElement.escape($0.name))\" value=\"\(XMLElement.escape($0.value))\">" }
            .joined(separator: "\n")
    }

    static func render(_ r: AuthorizationResponse, nonce: String) -> Response {
        let html = """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Returning to the application</title>
            <meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="/assets/latchkey.css"></head>
            <body><main class="card" aria-busy="true"><h1>Returning to the application</h1>
            <form method="post" action="\(XMLElement.escape(r.redirectURI))">
            \(hiddenInputs(r))
            <noscript><p>Scripts are off in this browser: continue with the button.</p></noscript>
            <button type="submit">Continue</button>
            </form></main>
            <script nonce="\(nonce)">document.forms[0].submit();</script></body></html>
            """
        var response = Response.text(html, status: .ok, contentType: "text/html; charset=utf-8").noStore()
        response.headers[.contentSecurityPolicy] = "default-src 'none'; script-src 'nonce-\(nonce)'; style-src 'self'; "
            + "form-action \(formAction(r)); base-uri 'none'; frame-ancestors 'none'"
        return response
    }

    /// The redirect URI's origin as a CSP source; `'none'` if it were ever
    /// anything but plain host bytes (a registered URI always is).
    static func formAction(_ r: AuthorizationResponse) -> String {
        r.origin.flatMap(plainOrigin) ?? "'none'"
    }

    /// `origin` when it is only scheme, host and port bytes (safe inside a CSP), else nil.
    static func plainOrigin(_ origin: String) -> String? {
        origin.utf8.allSatisfy({ b in
            (b >= 48 && b <= 58) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == 45 || b == 46 || b == 47 || b == 91 || b == 93
        }) ? origin : nil
    }
}
