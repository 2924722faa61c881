// For test/t/027_node_package.pl: tsc --strict must refuse this, so that
// the package's declarations are known to carry types (an any would let
// it pass).
import { Order } from 'orders-repository';

const total: number = Order.new({ customerId: 'c', currency: 'EUR' }).total;
console.log(total);
