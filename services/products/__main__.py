from products.app import create_app
from products.settings import Settings
from shopkit.serve import serve

serve(create_app, Settings())
