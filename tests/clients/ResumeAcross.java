// A JVM client as Steadybit's agent connects (java.net.http.HttpClient, PKCS#12 identity),
// making N requests, each on a new connection (a new HttpClient over the same SSLContext, whose
// session cache the JDK keys by host and port), so that it may offer its newest session each
// time. Behind one address (a Service, here a round-robin proxy) those connections reach
// different replicas.
//
// Usage: java ResumeAcross.java URL CA_PEM KEYSTORE_P12 PASSWORD N
// Prints "REQUEST <n> STATUS <code>" per request, or "ERROR <exception>"; exits 0 when all
// answered 200.

import java.io.FileInputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.time.Duration;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class ResumeAcross {
    public static void main(String[] args) throws Exception {
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        try (FileInputStream in = new FileInputStream(args[1])) {
            int i = 0;
            for (var cert : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                trust.setCertificateEntry("ca" + i++, (X509Certificate) cert);
            }
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        KeyStore keys = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream(args[2])) {
            keys.load(in, args[3].toCharArray());
        }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(keys, args[3].toCharArray());
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);

        int n = Integer.parseInt(args[4]);
        boolean ok = true;
        for (int i = 1; i <= n; i++) {
            HttpClient client = HttpClient.newBuilder()
                    .sslContext(context)
                    .version(HttpClient.Version.HTTP_1_1)
                    .connectTimeout(Duration.ofSeconds(20))
                    .build();
            HttpRequest request = HttpRequest.newBuilder(URI.create(args[0]))
                    .timeout(Duration.ofSeconds(20))
                    .GET()
                    .build();
            try {
                HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
                System.out.println("REQUEST " + i + " STATUS " + response.statusCode());
                ok &= response.statusCode() == 200;
            } catch (Exception e) {
                System.out.println("ERROR " + e);
                ok = false;
            }
        }
        System.exit(ok ? 0 : 1);
    }
}
