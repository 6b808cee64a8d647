"""ERP native records, in the shape of an SAP-style ERP's tables and BAPI structures.

Field names are the ERP's column names (KUNNR customer number, MATNR material, VBELN sales
document, BANFN purchase requisition); ``ZZ*`` fields are the site's own additions, as every
installation has. Dates are ``20261124``, times ``093000``, quantities ``1,250.000`` and
amounts ``1,200,000.00``. The ERP's CSV exports are GBK.
"""

from __future__ import annotations

from connectors.common.native import (
    S2,
    S4,
    S10,
    S20,
    S40,
    S80,
    AmountStr,
    DateStr,
    NativeModel,
)


class ErpCustomer(NativeModel):
    """Customer master (KNA1 with credit and sales-area data)."""

    KUNNR: S10 | None = None  # customer number, assigned by the ERP
    KTOKD: S4  # account group
    NAME1: S40
    NAME2: S40 | None = None  # name continued (branch suffix, long names)
    SORTL: S10 | None = None  # search term
    STCEG: S20 | None = None  # tax number (the credit code for Chinese companies)
    LAND1: S4 = "CN"
    REGIO: S4 | None = None  # region (province code)
    ORT01: S40 | None = None  # city
    ORT02: S40 | None = None  # district
    STRAS: S80 | None = None  # street and number
    PSTLZ: S10 | None = None  # postcode
    TELF1: S40 | None = None
    TELFX: S40 | None = None
    SMTP_ADDR: S80 | None = None
    BRSCH: S4 | None = None  # industry key
    KLIMK: AmountStr | None = None  # credit limit
    WAERS: S4 = "CNY"
    ZTERM: S4 | None = None  # terms of payment
    SPERR: S2 = ""  # posting block: "X" = blocked
    ZZSALES: S10 | None = None  # owning salesperson (site field)
    ERDAT: DateStr | None = None
    AEDAT: DateStr | None = None
    AEZET: S10 | None = None


class ErpOrderItem(NativeModel):
    POSNR: S10  # 000010
    MATNR: S20
    ARKTX: S40 | None = None  # item text
    KWMENG: AmountStr  # order quantity 100.000
    VRKME: S4  # sales unit
    NETPR: AmountStr  # net price


class ErpOrder(NativeModel):
    """Sales order (VBAK header with VBAP items)."""

    VBELN: S10 | None = None
    AUART: S4  # order type
    KUNNR: S10  # sold-to party
    BSTNK: S20 | None = None  # customer reference: the CRM or DRP order number
    AUDAT: DateStr
    VDATU: DateStr | None = None  # requested delivery date
    WAERK: S4 = "CNY"
    ZZSTATUS: S2  # lifecycle status (site field)
    VKORG: S4 = "1000"  # sales organization
    VTWEG: S2 = "10"  # distribution channel
    ERNAM: S20 | None = None
    AEDAT: DateStr | None = None
    AEZET: S10 | None = None
    ITEMS: tuple[ErpOrderItem, ...] = ()


class ErpMaterial(NativeModel):
    """Material master (MARA with MAKT description)."""

    MATNR: S20 | None = None
    MAKTX: S40
    MTART: S4  # material type
    MATKL: S10 | None = None  # material group
    MEINS: S4  # base unit of measure
    GROES: S40 | None = None  # size/dimensions: the specification
    ZEINR: S40 | None = None  # document number: the PDM drawing number
    ZEIVR: S4 | None = None  # document version: the drawing revision
    LVORM: S2 = ""  # flagged for deletion: "X"
    ERSDA: DateStr | None = None
    LAEDA: DateStr | None = None


class ErpBomItem(NativeModel):
    POSNR: S4  # 0010
    IDNRK: S20  # component
    MENGE: AmountStr
    MEINS: S4
    AUSCH: AmountStr | None = None  # component scrap in %
    DATUV: DateStr | None = None  # valid from
    DATUB: DateStr | None = None  # valid to
    EBORT: S40 | None = None  # installation point: reference designators
    # Deletion indicator of a change (as CSAP_MAT_BOM_MAINTAIN's FLDELETE): "X" removes the
    # item at POSNR. Only in a change sent to an existing BOM; a stored BOM never has one.
    FLDELETE: S2 | None = None


class ErpBom(NativeModel):
    """Manufacturing BOM (STKO header with STPO items)."""

    MATNR: S20
    WERKS: S4
    STLAN: S2  # usage: 1 production
    STLAL: S2  # alternative 01
    REVLV: S4  # revision level
    AENNR: S20 | None = None  # change number (the ECO)
    AEDAT: DateStr | None = None
    AEZET: S10 | None = None
    ITEMS: tuple[ErpBomItem, ...] = ()


class ErpStock(NativeModel):
    """Stock of a material in a storage location (MARD), as the nightly/hourly extract."""

    MATNR: S20
    WERKS: S4
    LGORT: S4
    LABST: AmountStr  # unrestricted (may be negative: the ERP allows negative stock)
    INSME: AmountStr  # in quality inspection
    SPEME: AmountStr  # blocked
    UMLME: AmountStr  # in transfer
    BDMNG: AmountStr  # reserved (open reservations)
    MEINS: S4
    LAEDA: DateStr  # snapshot date
    UZEIT: S10  # snapshot time 093000


class ErpChannelStock(NativeModel):
    """Distributor channel stock and sell-through (Z-table ZCHSTOCK), reported by the DRP.

    A site table beside MARD, never MARD itself: the dealers' stock is not the company's,
    and the ERP's own stock figures must not be overwritten by it. Keyed by the DRP's dealer
    code (a foreign reference, as BSTNK keeps the CRM's order number); KUNNR is the dealer's
    customer number here when the hub knows it.
    """

    ZDEALER: S20  # DRP dealer code
    ZWHCODE: S10  # dealer warehouse
    MATNR: S20
    KUNNR: S10 | None = None
    ZREGION: S20 | None = None  # sales region (大区) in words
    LABST: AmountStr  # dealer's stock on hand (may be negative, as dealers book it)
    UMLME: AmountStr  # in transit to the dealer
    SPEME: AmountStr  # locked at the dealer
    MEINS: S4
    ZSOLD: AmountStr | None = None  # sell-through of the period
    ZPERIOD: S10 | None = None  # period 2026-11
    LAEDA: DateStr  # snapshot date
    UZEIT: S10  # snapshot time


class ErpRequisition(NativeModel):
    """Purchase requisition item (EBAN): 请购, sent to OA for approval."""

    canonical_types = ("purchase_requisition",)

    BANFN: S10 | None = None
    BNFPO: S10  # item 00010
    BSART: S4 = "NB"  # document type
    MATNR: S20 | None = None
    TXZ01: S40  # short text
    MENGE: AmountStr
    MEINS: S4
    PREIS: AmountStr  # valuation price per unit
    WAERS: S4 = "CNY"
    AFNAM: S20  # requisitioner
    ZZDEPT: S20 | None = None  # requisitioner's department (site field)
    ZZAPPROVER: S20  # first approver of the release strategy (site field)
    EKGRP: S4  # purchasing group
    BADAT: DateStr  # requisition date
    ERZET: S10  # creation time
    LFDAT: DateStr | None = None  # delivery date
    FRGKZ: S2 = ""  # release indicator


class ErpRelease(NativeModel):
    """Release (approval) of a requisition item: what OA's decision becomes in the ERP."""

    BANFN: S10
    BNFPO: S10
    REL_CODE: S2  # A approved, R rejected, W withdrawn
    REL_BY: S20
    REL_DATE: DateStr
    REL_TIME: S10
    REL_TEXT: S80 | None = None
