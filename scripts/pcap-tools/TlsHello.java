// A tiny Java TLS client for scripts/capture-fixtures: JSSE's own ClientHello with the
// given SNI and ALPN list. usage: java TlsHello HOST PORT SNI ALPN[,ALPN...]
import java.security.cert.X509Certificate;
import java.util.List;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManager;
import javax.net.ssl.X509TrustManager;

public class TlsHello {
    public static void main(String[] args) throws Exception {
        // The fixture server's certificate comes from a throw-away CA; only the
        // ClientHello matters here, so the chain is not checked.
        TrustManager[] trustAll = {new X509TrustManager() {
            public void checkClientTrusted(X509Certificate[] c, String a) {}
            public void checkServerTrusted(X509Certificate[] c, String a) {}
            public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; }
        }};
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, trustAll, null);
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(args[0], Integer.parseInt(args[1]))) {
            SSLParameters p = s.getSSLParameters();
            p.setServerNames(List.of(new SNIHostName(args[2])));
            p.setApplicationProtocols(args[3].split(","));
            s.setSSLParameters(p);
            s.startHandshake();
            System.out.println("java: " + s.getSession().getProtocol() + " alpn=" + s.getApplicationProtocol());
        }
    }
}
