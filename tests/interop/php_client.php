<?php
// PHP SoapClient driven from the CAServer ?WSDL; prints one JSON object per call.
//
//   php php_client.php get    WSDL_URL NUMBER
//   php php_client.php submit WSDL_URL CSR_PEM_FILE HOSTNAME INSTANCE FILENAME CONTACT_NAME [SUBJECT]
//   php php_client.php list   WSDL_URL [HOSTNAME INSTANCE]
//
// A SOAP fault prints {"fault": {...}} and exits with 3; a usage error exits with 2.
// Over HTTPS the server is verified against the CA certificate file named by $INTEROP_CA_FILE
// alone (host name included), through the stream context SoapClient uses for the WSDL and calls.
// ListCertificates returns an untyped .NET DataSet (`s:schema` ref + `s:any`): SoapClient
// hands both parts back as XML strings (`->schema`, `->any`), so the rows are read from
// those strings ("typed_rows") and, independently, from __getLastResponse() ("rows").

const XSD = 'http://www.w3.org/2001/XMLSchema';
const MSDATA = 'urn:schemas-microsoft-com:xml-msdata';
const DIFFGR = 'urn:schemas-microsoft-com:xml-diffgram-v1';
const TNS = 'http://pki.intersystems.com';

function usage(): never
{
    fwrite(STDERR, "usage: php_client.php get|submit|list WSDL_URL ...\n");
    exit(2);
}

function emit(array $value, int $code = 0): never
{
    echo json_encode($value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE), "\n";
    exit($code);
}

function element_children(DOMNode $node): array
{
    $out = [];
    foreach ($node->childNodes as $child) {
        if ($child instanceof DOMElement) {
            $out[] = $child;
        }
    }
    return $out;
}

/** Column names of the DataSet's row element, in schema order (IRIS clients read them by position). */
function dataset_columns(DOMElement $schema): array
{
    foreach ($schema->getElementsByTagNameNS(XSD, 'element') as $dataset) {
        if ($dataset->getAttributeNS(MSDATA, 'IsDataSet') !== 'true') {
            continue;
        }
        $choice = $dataset->getElementsByTagNameNS(XSD, 'choice')->item(0);
        $row = element_children($choice)[0];
        $columns = [];
        foreach ($row->getElementsByTagNameNS(XSD, 'sequence')->item(0)->childNodes as $col) {
            if ($col instanceof DOMElement) {
                $columns[] = $col->getAttribute('name');
            }
        }
        return ['dataset' => $dataset->getAttribute('name'), 'row' => $row->getAttribute('name'),
                'columns' => $columns];
    }
    throw new RuntimeException('no msdata:IsDataSet element in the DataSet schema');
}

/** Rows of the diffgram: children of the dataset element, in no namespace (xmlns=""). */
function dataset_rows(DOMElement $diffgram, array $shape): array
{
    $rows = [];
    foreach (element_children($diffgram) as $dataset) {
        if ($dataset->localName !== $shape['dataset'] || $dataset->namespaceURI !== null) {
            continue;
        }
        foreach (element_children($dataset) as $row) {
            if ($row->localName !== $shape['row'] || $row->namespaceURI !== null) {
                throw new RuntimeException("unexpected row element {{$row->namespaceURI}}{$row->localName}");
            }
            $values = [];
            foreach (element_children($row) as $cell) {
                $values[$cell->localName] = $cell->textContent;
            }
            $rows[] = $values;
        }
    }
    return $rows;
}

/** Rows read from the whole SOAP response text, as any XML-aware client could. */
function rows_from_envelope(string $xml): array
{
    $doc = new DOMDocument();
    if (!$doc->loadXML($xml, LIBXML_NONET)) {
        throw new RuntimeException('response is not XML');
    }
    $result = $doc->getElementsByTagNameNS(TNS, 'ListCertificatesResult')->item(0);
    $parts = element_children($result);
    if (count($parts) !== 2 || $parts[0]->namespaceURI !== XSD || $parts[1]->namespaceURI !== DIFFGR) {
        throw new RuntimeException('ListCertificatesResult is not schema + diffgram');
    }
    $shape = dataset_columns($parts[0]);
    return [$shape, dataset_rows($parts[1], $shape)];
}

/** Rows read from the two strings SoapClient made of `s:schema` and `s:any`. */
function rows_from_result(stdClass $result): array
{
    $schema = new DOMDocument();
    $schema->loadXML($result->schema, LIBXML_NONET);
    $diffgram = new DOMDocument();
    $diffgram->loadXML($result->any, LIBXML_NONET);
    $shape = dataset_columns($schema->documentElement);
    return dataset_rows($diffgram->documentElement, $shape);
}

function fault_json(SoapFault $fault, SoapClient $client): array
{
    $detail = null;
    $last = $client->__getLastResponse();
    if ($last) {
        $doc = new DOMDocument();
        if ($doc->loadXML($last, LIBXML_NONET)) {
            $node = $doc->getElementsByTagName('detail')->item(0);
            $detail = $node === null ? null : trim($node->textContent);
        }
    }
    return ['fault' => ['faultcode' => $fault->faultcode, 'faultstring' => $fault->getMessage(),
                        'detail' => $detail]];
}

if ($argc < 3) {
    usage();
}
[, $command, $wsdl] = array_slice($argv, 0, 3);
$args = array_slice($argv, 3);

$options = [
    'trace' => true,
    'exceptions' => true,
    'cache_wsdl' => WSDL_CACHE_NONE,
    'connection_timeout' => 10,
];
$caFile = getenv('INTEROP_CA_FILE');
if ($caFile !== false && $caFile !== '') {
    $options['stream_context'] = stream_context_create(['ssl' => [
        'cafile' => $caFile,
        'verify_peer' => true,
        'verify_peer_name' => true,
        'allow_self_signed' => false,
    ]]);
}
try {
    $client = new SoapClient($wsdl, $options);
} catch (SoapFault $fault) {
    // SoapClient hides why the WSDL did not load; fetching it once more shows PHP's warning
    // (for TLS: "SSL operation failed ... certificate verify failed", or the name mismatch).
    fwrite(STDERR, $fault->getMessage() . "\n");
    set_error_handler(function (int $level, string $message): bool {
        fwrite(STDERR, $message . "\n");
        return true;
    });
    file_get_contents($wsdl, false, $options['stream_context'] ?? stream_context_create());
    exit(1);
}
ini_set('default_socket_timeout', '20');

try {
    switch ($command) {
        case 'get':
            if (count($args) !== 1) {
                usage();
            }
            $response = $client->GetCertificate(['number' => $args[0]]);
            // An unknown number comes back as a wrapper without a Result element.
            $cert = $response->GetCertificateResult ?? null;
            emit(['certificate' => $cert === null ? null : (array) $cert]);
        case 'submit':
            if (count($args) < 5 || count($args) > 6) {
                usage();
            }
            [$csrFile, $hostname, $instance, $filename, $contact] = $args;
            $csr = [
                'Name' => "$hostname:$instance:$filename",
                'Hostname' => $hostname,
                'Instance' => $instance,
                'Filename' => $filename,
                'Contents' => file_get_contents($csrFile),
                'ContactName' => $contact,
            ];
            if (isset($args[5])) {
                $csr['Subject'] = $args[5];
            }
            $response = $client->SubmitCSR(['csr' => $csr]);
            emit(['result' => $response->SubmitCSRResult]);
        case 'list':
            if (count($args) === 2) {
                $response = $client->ListCertificates(['hostname' => $args[0], 'instance' => $args[1]]);
            } elseif (count($args) === 0) {
                // "All certificates": both parameters omitted, as an IRIS client does.
                $response = $client->ListCertificates([]);
            } else {
                usage();
            }
            [$shape, $rows] = rows_from_envelope($client->__getLastResponse());
            emit(['row_name' => $shape['row'], 'columns' => $shape['columns'], 'rows' => $rows,
                  'typed_rows' => rows_from_result($response->ListCertificatesResult)]);
        default:
            usage();
    }
} catch (SoapFault $fault) {
    emit(fault_json($fault, $client), 3);
}
