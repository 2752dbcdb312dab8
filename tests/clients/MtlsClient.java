// A JVM client the way Steadybit's agent connects: java.net.http.HttpClient, the client
// identity in a PKCS#12 key store, the server CA from a PEM file, the JDK's default key
// manager choosing the client certificate from the server's certificate_authorities list.
//
// Usage: java MtlsClient.java URL CA_PEM [KEYSTORE_P12 PASSWORD]
// Prints "STATUS <code>" and the body, or "ERROR <exception>"; exits 0 on HTTP 200.

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

public class MtlsClient {
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

        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        if (args.length >= 4) {
            KeyStore keys = KeyStore.getInstance("PKCS12");
            try (FileInputStream in = new FileInputStream(args[2])) {
                keys.load(in, args[3].toCharArray());
            }
            kmf.init(keys, args[3].toCharArray());
        } else {
            KeyStore empty = KeyStore.getInstance("PKCS12");
            empty.load(null, null);
            kmf.init(empty, new char[0]);
        }

        SSLContext context = SSLContext.getInstance("TLS");
        context.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        HttpClient client = HttpClient.newBuilder()
                .sslContext(context)
                .connectTimeout(Duration.ofSeconds(20))
                .build();
        HttpRequest request = HttpRequest.newBuilder(URI.create(args[0]))
                .timeout(Duration.ofSeconds(20))
                .GET()
                .build();
        try {
            HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
            System.out.println("STATUS " + response.statusCode());
            System.out.println(response.body());
            System.exit(response.statusCode() == 200 ? 0 : 1);
        } catch (Exception e) {
            System.out.println("ERROR " + e);
            Throwable cause = e.getCause();
            while (cause != null) {
                System.out.println("CAUSE " + cause);
                cause = cause.getCause();
            }
            System.exit(1);
        }
    }
}
